"""Automatic screening of a recording: its transcript per leg, the rule pack's flags and a scorecard.

Screening every recording, in worker processes or on Ray, is `recordings.batch_screening.screen_pending()`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from asr.codecs import STREAM_RATES, resample
from asr.transcribe import leg_events
from asr.vosk_engine import AsrEvent, VoskEngine, Word
from asr.whisper_engine import WhisperEngine
from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import CallMonitor, CallState, Flag, RuleEngine, TimedWord
from compliance_rules.matching import PhraseIndex, normalize
from recordings.sealed import Opened
from recordings.store import Recording, RecordingStore, stamp

SCORECARD = ("identity_before_disclosure", "required_disclosures", "no_prohibited_language", "dispute_handled",
             "politeness")
"""The scorecard's items, the same for the automatic screen and for QA reviewers."""
SCREENINGS = {"recording_id": str, "status": str, "worker": str, "claimed_at": str, "finished_at": str,
              "error": str, "transcript": bytes, "flags": str, "scorecard": str, "score": float, "attempts": int}
Mark = Literal["pass", "fail", "n/a"]
SILENT_AGENT = "the agent said nothing (the call ended before anyone spoke)"
DEFAULT_PACK = "cn-collection"
OPENING_TURNS = 3
"""Required disclosures are due within the agent's first this many utterances (of the call, or after verification)."""
PROHIBITED = ("obscene", "insult", "threat", "gang", "false_legal_threat", "impersonation", "fee_demand", "harassment")
"""Flag categories of forbidden language: abuse, obscenity, threats, gang talk, impersonation, fee demands."""
DEBT_TALK = "disclosure_before_verification"
"""The packs' category for talk about the debt; raised only while identity is unverified."""
FLAG_KEYS = ("leg", "rule", "category", "severity", "start_s", "end_s")
SAME_FLAG_S = 2.0
"""A live flag and a screened one of the same rule and leg this close in call time are one finding."""


class ScreeningError(RuntimeError):
    """Screening cannot run as asked: Ray missing or unreachable, or a pack language without screening cues."""



@dataclass(frozen=True, slots=True)
class Utterance:
    """One final transcript piece of a leg, in call time."""

    leg: str
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class ScoreItem:
    """One scorecard item: pass, fail or n/a, and why (never the customer's words)."""

    mark: Mark
    why: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Screening:
    """A recording's automatic screen: transcript (sealed at rest), flags, scorecard and its 0–100 score."""

    recording_id: str
    transcript: list[Utterance]
    flags: list[dict[str, Any]]
    scorecard: dict[str, ScoreItem]
    screened_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def score(self) -> float:
        """The share of applicable items passed, 0–100."""
        marks = [item.mark for item in self.scorecard.values() if item.mark != "n/a"]
        return round(100 * sum(m == "pass" for m in marks) / len(marks), 1) if marks else 100.0


def create_tables(store: RecordingStore) -> None:
    """The `screenings` table, if missing."""
    store.create_table("screenings", SCREENINGS, pk="recording_id")


def save_screening(store: RecordingStore, screening: Screening) -> None:
    """Store a finished screen (the transcript sealed); it replaces a claim on the same recording."""
    create_tables(store)
    transcript = json.dumps([asdict(u) for u in screening.transcript], ensure_ascii=False)
    store.upsert("screenings", {
        "recording_id": screening.recording_id, "status": "done", "finished_at": stamp(screening.screened_at),
        "error": None, "transcript": store.seal_text("transcript", screening.recording_id, transcript),
        "flags": json.dumps(screening.flags, ensure_ascii=False),
        "scorecard": json.dumps({k: asdict(v) for k, v in screening.scorecard.items()}, ensure_ascii=False),
        "score": screening.score}, pk="recording_id")


def load_screening(store: RecordingStore, recording_id: str) -> Screening | None:
    """A recording's finished screen, its transcript opened; None if it has not been screened."""
    create_tables(store)
    rows = store.query("SELECT * FROM screenings WHERE recording_id = ? AND status = 'done'", [recording_id])
    if not rows:
        return None
    row = rows[0]
    transcript = json.loads(store.open_text("transcript", recording_id, row["transcript"]))
    return Screening(recording_id=recording_id, transcript=[Utterance(**u) for u in transcript],
                     flags=json.loads(row["flags"]),
                     scorecard={k: ScoreItem(**v) for k, v in json.loads(row["scorecard"]).items()},
                     screened_at=datetime.fromisoformat(row["finished_at"]))


# --- what the agent must say -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cue:
    """Agent words showing that something was said: a required disclosure, courtesy, or a dispute taken up."""

    key: str
    what: str
    patterns: tuple[str, ...]
    phrases: tuple[str, ...] = ()
    after_verification: bool = False
    """A disclosure due in the agent's first turns after identity is verified (the US mini-Miranda)."""


CUES: dict[str, tuple[Cue, ...]] = {
    "zh": (
        Cue("disclosure.identity", "who is calling",
            (r"(?:我是|我们是|这里是|这边是|我这边是|我这里是).{0,16}(?:中心|公司|客服|专员|工号|银行|事务所|律所|机构|部门)",
             r"工号", r"受.{0,12}委托")),
        Cue("disclosure.recording", "that the call is recorded", (r"录音", r"录制"), phrases=("全程录音", "通话录音")),
        Cue("courtesy", "courtesy", (r"您好|你好|请|谢谢|感谢|麻烦您|不好意思|抱歉|祝您",)),
        Cue("dispute_taken_up", "the dispute taken up",
            (r"异议.{0,12}(?:暂停|记录|登记|提交|核实)", r"暂停(?:跟进|催收|催款|提醒)", r"提交(?:核实|复核|审核)")),
    ),
    "en": (
        Cue("disclosure.identity", "who is calling",
            (r"(?:thisis|mynameis|imcalling|iamcalling)\w{0,40}(?:from|with|onbehalfof)", r"mynameis")),
        Cue("disclosure.recording", "that the call is recorded",
            (r"(?:call|conversation)\w{0,16}(?:recorded|monitored)", r"record(?:ed|ing)for(?:quality|training)")),
        Cue("disclosure.mini_miranda", "that it is an attempt to collect a debt",
            (r"attempttocollectadebt", r"(?:froma|isa|ama)debtcollector", r"informationobtainedwillbeused"),
            after_verification=True),
        Cue("courtesy", "courtesy", (r"please|thankyou|thanks|hello|goodmorning|goodafternoon|goodevening|sorry",)),
        Cue("dispute_taken_up", "the dispute taken up",
            (r"noted(?:your)?dispute", r"(?:stop|pause)\w{0,12}(?:review|collection|verif)")),
    ),
}
"""Screening cues by pack language; disclosures are those whose key starts with `disclosure.`."""


class Cues:
    """A pack language's cues, compiled with the rule engine's matcher (homophones too, for Chinese)."""

    def __init__(self, cues: Sequence[Cue], *, homophones: bool) -> None:
        self.disclosures = [cue for cue in cues if cue.key.startswith("disclosure.")]
        self._index = PhraseIndex()
        for cue in cues:
            for phrase in cue.phrases:
                self._index.add_phrase(cue.key, phrase, homophones=homophones)
            for pattern in cue.patterns:
                self._index.add_pattern(cue.key, pattern)

    @classmethod
    def for_pack(cls, rules: RuleEngine) -> Cues:
        """The cues of the pack's language."""
        language = rules.pack.language
        if language not in CUES:
            raise ScreeningError(f"no screening cues for language {language!r} of pack {rules.pack.name}; "
                                 "add them to CUES in recordings/screening.py")
        return cls(CUES[language], homophones=language == "zh")

    def find(self, text: str) -> set[str]:
        """Keys of the cues heard in an utterance."""
        return {hit.key for hit in self._index.find(normalize(text).text)}


# --- screening one recording -------------------------------------------------------------------------------------

Heard = tuple[str, AsrEvent]
"""A leg and one of its final results."""


@dataclass(slots=True)
class Findings:
    """What one ordered pass over a call found: its flags, and when things were first said."""

    flags: list[dict[str, Any]] = field(default_factory=list)
    agent_turns: int = 0
    verified_turns: int = 0
    verified_at: float | None = None
    debt_at: float | None = None
    disputed_at: float | None = None
    courteous_at: float | None = None
    said: dict[str, float] = field(default_factory=dict)
    """Disclosure cue key → when the agent made it, if in time."""


def transcribe_recording(asr: VoskEngine | WhisperEngine, opened: Opened,
                         agent_lines: Sequence[dict] | None = None) -> list[Heard]:
    """Each leg's final results through the live path's VAD gate and 100 ms feed, in call time; a bot's agent leg
    is taken from the lines it said (`agent_lines`), which are exact, instead."""
    rate = opened.header.sample_rate
    stream_rate = rate if rate in STREAM_RATES else 16000
    said = [Word(line["text"], line["start_s"], line["end_s"]) for line in agent_lines or ()]
    heard: list[Heard] = [("agent", AsrEvent("final", word.word, (word,))) for word in said]
    for channel, leg in enumerate(opened.header.legs):
        if agent_lines is not None and leg == "agent":
            continue
        pcm = resample(np.ascontiguousarray(opened.frames[:, channel]), rate, stream_rate)
        heard += [(leg, event) for event in leg_events(asr, pcm, stream_rate, partials=False)]
    return heard


def check_call(heard: Sequence[Heard], rules: RuleEngine, cues: Cues, meaning: SemanticDetector | None = None,
               ) -> Findings:
    """Run the pack (and the semantic model) over the final results in the order they settled, as the live monitor
    does, and note the cues."""
    monitor, found = CallMonitor(rules, model=meaning), Findings()
    for leg, event in sorted(heard, key=lambda h: (h[1].end_s, h[1].start_s, h[0])):
        words = tuple(TimedWord(w.word, w.start_s, w.end_s) for w in event.words)
        for flag in monitor.check_all(leg, event.text, words=words):
            if flag.category != "signal":
                found.flags.append(flag_record(flag, "screen"))
            elif flag.sets == "disputed" and found.disputed_at is None:
                found.disputed_at = flag.start_s if flag.start_s is not None else event.start_s
        if monitor.state.verified and found.verified_at is None:
            found.verified_at = event.end_s
        if leg == "agent":
            _note_agent_cues(found, monitor, cues, event, words)
    return found


def _note_agent_cues(found: Findings, monitor: CallMonitor, cues: Cues, event: AsrEvent,
                     words: tuple[TimedWord, ...]) -> None:
    keys = cues.find(event.text)
    for cue in cues.disclosures:
        turn = found.verified_turns if cue.after_verification else found.agent_turns
        due = monitor.state.verified or not cue.after_verification
        if cue.key in keys and cue.key not in found.said and due and turn < OPENING_TURNS:
            found.said[cue.key] = event.start_s
    if "courtesy" in keys and found.courteous_at is None:
        found.courteous_at = event.start_s
    if "dispute_taken_up" in keys and not monitor.state.disputed:
        monitor.state.disputed = True  # the customer disputed in words the pack missed: collection must pause now
        found.disputed_at = event.start_s
    unverified = CallState(verified=False)
    if found.debt_at is None and any(f.category == DEBT_TALK for f in
                                     monitor.engine.check("agent", event.text, unverified, words)):
        found.debt_at = event.start_s
    found.agent_turns += 1
    found.verified_turns += monitor.state.verified


def flag_record(flag: Flag, source: str) -> dict[str, Any]:
    """A flag as recordings and screenings keep it (no words), with where it came from: `live` or `screen`."""
    record = {"leg": flag.leg, "rule": flag.rule, "category": flag.category, "severity": flag.severity,
              "start_s": flag.start_s, "end_s": flag.end_s, "source": source}
    if flag.source == "model":
        record.update(score=flag.score, model=flag.model)
    return record


def merge_flags(screened: Sequence[dict[str, Any]], live: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The call's live flags, plus each screened flag the live path did not raise, in call time order."""
    merged = [{**{k: f.get(k) for k in FLAG_KEYS}, "source": "live"} for f in live]
    merged += [f for f in screened if not any(_same_flag(f, m) for m in merged[:len(live)])]
    return sorted(merged, key=lambda f: (f["start_s"] is None, f["start_s"] or 0.0))


def _same_flag(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if (a["rule"], a["leg"]) != (b["rule"], b["leg"]) or (a["start_s"] is None) != (b["start_s"] is None):
        return False
    return a["start_s"] is None or abs(a["start_s"] - b["start_s"]) <= SAME_FLAG_S


def fill_scorecard(found: Findings, flags: Sequence[dict[str, Any]], cues: Cues) -> dict[str, ScoreItem]:
    """Mark each SCORECARD item from the call's flags and findings; the reasons name times and rules, never words."""
    agent = [f for f in flags if f["leg"] == "agent"]
    return {"identity_before_disclosure": _identity(found, agent), "required_disclosures": _disclosures(found, cues),
            "no_prohibited_language": _language(agent), "dispute_handled": _dispute(found, agent),
            "politeness": _politeness(found, agent)}


def _at(seconds: float | None) -> str:
    return "an unknown time" if seconds is None else f"{seconds:.1f} s"


def _listed(flags: Sequence[dict[str, Any]]) -> str:
    return "; ".join(f"{f['category']} at {_at(f['start_s'])} ({f['rule']})" for f in flags)


def _identity(found: Findings, agent: list[dict[str, Any]]) -> ScoreItem:
    early = [f for f in agent if f["category"] == DEBT_TALK]
    if early:
        return ScoreItem("fail", f"the debt came up before identity was verified: {_listed(early)}")
    if found.debt_at is None:
        return ScoreItem("n/a", "the agent did not discuss the debt")
    return ScoreItem("pass", f"the debt first came up at {_at(found.debt_at)}, after identity was verified at "
                             f"{_at(found.verified_at)}")


def _disclosures(found: Findings, cues: Cues) -> ScoreItem:
    if found.agent_turns == 0:
        return ScoreItem("n/a", SILENT_AGENT)
    due = [c for c in cues.disclosures if not c.after_verification or found.verified_at is not None]
    missing = [c.what for c in due if c.key not in found.said]
    if missing:
        return ScoreItem("fail", f"not in the agent's first {OPENING_TURNS} turns: {', '.join(missing)}")
    return ScoreItem("pass", "the agent said " + ", ".join(f"{c.what} (at {_at(found.said[c.key])})" for c in due))


def _language(agent: list[dict[str, Any]]) -> ScoreItem:
    bad = [f for f in agent if f["category"] in PROHIBITED]
    if bad:
        return ScoreItem("fail", f"prohibited language: {_listed(bad)}")
    return ScoreItem("pass", "no prohibited language flagged on the agent leg")


def _dispute(found: Findings, agent: list[dict[str, Any]]) -> ScoreItem:
    pressed = [f for f in agent if f["category"] == "pressing_after_dispute"]
    if pressed:
        return ScoreItem("fail", f"collection went on after the dispute: {_listed(pressed)}")
    if found.disputed_at is None:
        return ScoreItem("n/a", "the customer did not dispute the debt")
    return ScoreItem("pass", f"the agent stopped collecting after the dispute at {_at(found.disputed_at)}")


def _politeness(found: Findings, agent: list[dict[str, Any]]) -> ScoreItem:
    insults = [f for f in agent if f["category"] == "insult"]
    if insults:
        return ScoreItem("fail", f"insulting language: {_listed(insults)}")
    if found.agent_turns == 0:
        return ScoreItem("n/a", SILENT_AGENT)
    if found.courteous_at is None:
        return ScoreItem("fail", "no courtesy phrase (greeting, please, thanks) from the agent")
    return ScoreItem("pass", f"courteous from {_at(found.courteous_at)}; no insults flagged")


def screen_recording(store: RecordingStore, recording_id: str, asr: VoskEngine | WhisperEngine, rules: RuleEngine,
                     cues: Cues | None = None, meaning: SemanticDetector | None = None) -> Screening:
    """Decrypt one recording, transcribe both legs, check them against the pack and fill the scorecard."""
    return screen_audio(store.get(recording_id), store.open_audio(recording_id), asr, rules, cues,
                        store.agent_lines(recording_id), meaning)


def screen_audio(recording: Recording, opened: Opened, asr: VoskEngine | WhisperEngine, rules: RuleEngine,
                 cues: Cues | None = None, agent_lines: Sequence[dict] | None = None,
                 meaning: SemanticDetector | None = None) -> Screening:
    """Screen a recording's decrypted audio (a bot's leg from its lines) with the rules and the semantic model;
    its live flags join the screened ones."""
    cues = cues or Cues.for_pack(rules)
    heard = transcribe_recording(asr, opened, agent_lines)
    found = check_call(heard, rules, cues, meaning)
    flags = merge_flags(found.flags, recording.flags)
    transcript = sorted((Utterance(leg, round(e.start_s or 0.0, 2), round(e.end_s or 0.0, 2), e.text)
                         for leg, e in heard), key=lambda u: (u.start_s, u.leg))
    return Screening(recording_id=recording.recording_id, transcript=transcript, flags=flags,
                     scorecard=fill_scorecard(found, flags, cues))
