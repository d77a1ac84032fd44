"""A live call: two legs, each a pipeline written once here, plus the call clock and the live board."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Literal

from asr.codecs import Encoding
from asr.vosk_engine import VoskEngine
from asr.whisper_engine import WhisperEngine
from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import CallMonitor, CallState, Flag, RuleEngine
from compliance_rules.timing import CallClock
from recordings.call_recording import RecordingError
from recordings.store import RecordingStore
from voicebot.admission import MAX_AHEAD_S, Admission
from voicebot.audit import AuditLog
from voicebot.board import WINDOW_RULE, CallBoard, CallHistory
from voicebot.config import Config
from voicebot.frames import LEGS, Action, ActionFrame, DtmfFrame, EndFrame, InputAudioFrame, Leg, ViolationFrame
from voicebot.models import load_recognizer
from voicebot.pipeline import Pipeline, Processor
from voicebot.stages.audit import Audit, sealer
from voicebot.stages.check_meaning import CheckMeaning
from voicebot.stages.check_rules import CheckRules
from voicebot.stages.decode import Decode
from voicebot.stages.enforce import CallControl, Enforce
from voicebot.stages.fail_safe import FailSafe
from voicebot.stages.publish import Event, Publish
from voicebot.stages.recognize import Recognize
from voicebot.stages.record import Record
from voicebot.stages.vad_gate import VadGate
from voicebot.tap import Pbx, PbxControl
from voicebot.tts import PromptError, language_code

log = logging.getLogger(__name__)

Mode = Literal["in-path", "tap"]
LegBuilder = Callable[["Call", Leg, CallControl], Pipeline]
CLOCK_TICK_S = 0.5
RETRY_WRITE_S = 5.0
"""How often a call's end that the disk refused is written again."""
DISK_THREADS = 4
BACKGROUND_NICE = 10
SAMPLE_BYTES: dict[Encoding, int] = {"pcm16": 2, "ulaw": 1, "alaw": 1}
PACK_LANGUAGE = {"cmn": "zh", "en": "en"}
"""The language a pack names (zh, en) for each of the speech languages tags are read as (voicebot.tts)."""
_DETACHED: set[asyncio.Task[None]] = set()


class LanguageNotServed(ValueError):
    """A call asks for a language this process loaded no recognizer and rule pack for."""


@dataclass(frozen=True, slots=True)
class Hearing:
    """What one language's calls are heard and judged with: its recognizer, rule pack and semantic model."""

    asr: VoskEngine | WhisperEngine
    rules: RuleEngine
    meaning: SemanticDetector | None = None


def load_hearing(config: Config, pack: str, *, semantic: bool = True, model: Path | None = None) -> Hearing:
    """A pack's rules, the recognizer for its language (`model`: another folder) and, if wanted, the semantic model;
    blocking."""
    rules = RuleEngine.from_pack(pack)
    meaning = SemanticDetector.for_pack(rules.pack) if semantic else None
    return Hearing(load_recognizer(config, rules.pack.language, model), rules, meaning)


@dataclass(frozen=True, slots=True)
class Engines:
    """What every call in a process shares: the recognizer model, the rules, the audit log, the worker threads."""

    asr: VoskEngine | WhisperEngine
    rules: RuleEngine
    audit: AuditLog
    recordings: RecordingStore
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(os.cpu_count() or 2))
    """CPU work on the enforcement path: the agent's recognition, the semantic model, NLU, speech synthesis."""
    background: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        os.cpu_count() or 2, thread_name_prefix="background", initializer=os.nice, initargs=(BACKGROUND_NICE,)))
    """The customer leg's recognition on supervised calls, at a lower OS priority: under load it lags (its signals
    come late) while the agent's leg, whose words are enforced, keeps real time."""
    disk: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(DISK_THREADS))
    """Audit appends and the recording store: their fsyncs never wait behind recognition, nor it behind them."""
    pbx: Pbx | None = None
    """Where tapped calls' actions are sent; None: tapped calls are only alerted on."""
    meaning: SemanticDetector | None = None
    """The semantic model under the rules' pack; None: the rules alone."""
    admission: Admission = field(default_factory=Admission)
    """The process's call slots and idle timeout."""
    others: Mapping[str, Hearing] = field(default_factory=dict)
    """Other languages this process serves, by language (`asr`, `rules` and `meaning` serve the pack's own)."""

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages calls may ask for, the default (the pack's) first."""
        return (self.rules.pack.language, *self.others)

    def for_language(self, language: str | None) -> Engines:
        """These engines hearing and judging `language` (None: the default); LanguageNotServed if none is loaded."""
        if language is None or language == self.rules.pack.language:
            return self
        if language not in self.others:
            raise LanguageNotServed(f"this server serves {', '.join(self.languages)} calls, not {language}; "
                                    f"start it with a --pack for {language} as well")
        hearing = self.others[language]
        return replace(self, asr=hearing.asr, rules=hearing.rules, meaning=hearing.meaning)

    def shutdown(self) -> None:
        """Wait for queued work, then stop the worker threads."""
        for pool in (self.executor, self.background, self.disk):
            pool.shutdown(wait=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallInfo:
    """Who and what a call is, as its adapter learned it."""

    adapter: str
    mode: Mode = "in-path"
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    zones: tuple[str, ...] = ()
    """The debtor's time zones; empty means every zone of the pack (the strictest reading)."""
    agent_id: str | None = None
    account_id: str | None = None
    language: str | None = None
    """The language the call is in (zh, en), as the adapter or the campaign says; None: the pack's."""
    verified: bool = False
    """The debtor's identity was confirmed before the call reached this server (an IVR check, a verified callback,
    a transfer after the bot verified), as the PBX or dialer says: the monitor starts in the verified state."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    speed: float = 1.0
    """How fast audio arrives relative to real time (file replay can run faster)."""
    opened_mono: float = field(default_factory=time.monotonic, compare=False)
    """When the adapter learned of the call: a peer sending in real time is never ahead of this, however long the
    call took to set up (a bot's first call loads its model meanwhile)."""


def call_language(tag: str | None) -> str | None:
    """The language a tag names (en, en-US, zh, zh-CN, cmn) as zh or en; None when empty; ValueError otherwise."""
    if not (tag or "").strip():
        return None
    try:
        return PACK_LANGUAGE[language_code(tag or "")]
    except PromptError:  # its message repeats the tag; this one names no outside value
        raise ValueError("a call's language must be zh or en (en-US, zh-CN and cmn are read as these)") from None


class Call:
    """One supervised call: feed it each leg's packets; it recognises, checks, audits, records and enforces."""

    def __init__(self, info: CallInfo, engines: Engines, control: CallControl, board: CallBoard,
                 *, now: Callable[[], datetime] | None = None, build: LegBuilder | None = None) -> None:
        self.info = info
        self.engines = engines.for_language(info.language)
        self.board = board
        self.monitor = CallMonitor(self.engines.rules, CallState(verified=info.verified), model=self.engines.meaning)
        self.recording = engines.recordings.writer(info.call_id, info.started_at)
        self.outcome: str | None = None
        self.agent_lines: list[dict] | None = None
        """The bot's lines as said, on a bot call: QA screens them as they are rather than re-recognising them."""
        """What the call achieved, when a bot's dialog says (the recording's metadata keeps it)."""
        self.events = CallHistory()
        self.muted: set[Leg] = set()
        self.ended_reason: str | None = None
        self._started_mono = time.monotonic()
        self._now = now or self._clock_now
        if info.mode == "tap":
            control = PbxControl(engines.pbx, info.call_id, self.emit)
        self.control = control
        self.legs = {leg: (build or build_leg_pipeline)(self, leg, control) for leg in LEGS}
        self._tasks: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()
        self._registered = False
        self._admitted = False
        self._fed_s = dict.fromkeys(LEGS, 0.0)
        self._last_media = time.monotonic()

    @property
    def call_id(self) -> str:
        """The call's id in the audit log and the recording store."""
        return self.info.call_id

    def summary(self) -> dict[str, object]:
        """What the console's call list shows of the call."""
        info = self.info
        return {"call_id": self.call_id, "adapter": info.adapter, "mode": info.mode, "agent_id": info.agent_id,
                "started_at": info.started_at.isoformat(), "zones": list(info.zones),
                "flags": sum(1 for e in self.events if e["type"] == "flag" and not e.get("signal")),
                "muted": sorted(self.muted), "ended": self.ended_reason,
                "elapsed_s": round(time.monotonic() - self._started_mono, 1),
                "warn_heard_by": self.control.warn_heard_by}

    def audio_wall_s(self, call_time_s: float) -> float:
        """The time.monotonic() at which audio of this call time reached us."""
        return self._started_mono + call_time_s / self.info.speed

    def _clock_now(self) -> datetime:
        return self.info.started_at + timedelta(seconds=(time.monotonic() - self._started_mono) * self.info.speed)

    async def start(self) -> None:
        """Take a call slot (CallRefused when none is free), write the call's start, start both legs and the clock."""
        self.engines.admission.take(self.info.adapter)
        self._admitted = True
        data = {"adapter": self.info.adapter, "mode": self.info.mode, "zones": list(self.info.zones),
                "pack": self.engines.rules.pack.name,
                "language": self.engines.rules.pack.language, "started_at": self.info.started_at.isoformat(),
                "verified": self.info.verified}
        register = partial(self.engines.recordings.register, self.call_id, started_at=self.info.started_at,
                           adapter=self.info.adapter, agent_id=self.info.agent_id, account_id=self.info.account_id,
                           pack=self.engines.rules.pack.name)
        await asyncio.get_running_loop().run_in_executor(self.engines.disk, register)
        self._registered = True
        await self._audit("call_start", data, self.info.agent_id)
        self.board.calls[self.call_id] = self
        self.emit({"type": "call_start", **data, "agent_id": self.info.agent_id})
        self._started_mono = self._last_media = time.monotonic()
        self._tasks = [asyncio.create_task(p.run(), name=f"{self.call_id}:{p.name}") for p in self.legs.values()]
        self._tasks.append(asyncio.create_task(self._run_clock(), name=f"{self.call_id}:clock"))

    def feed(self, leg: Leg, payload: bytes, encoding: Encoding, sample_rate: int) -> None:
        """Queue one packet of a leg's audio, as received."""
        if self.ended_reason is None:
            self.legs[leg].queue(InputAudioFrame(leg=leg, payload=payload, encoding=encoding,
                                                 sample_rate=sample_rate))
            self._fed_s[leg] += len(payload) / (SAMPLE_BYTES[encoding] * sample_rate)
            self._last_media = time.monotonic()

    def ahead_s(self, leg: Leg) -> float:
        """How far the leg's audio runs ahead of the clock since the call opened, past MAX_AHEAD_S (≤ 0: not)."""
        return self._fed_s[leg] - (time.monotonic() - self.info.opened_mono) * self.info.speed - MAX_AHEAD_S

    async def pace(self, leg: Leg) -> None:
        """Wait while the leg's audio runs ahead: media sent faster is read no faster, a set-up backlog at once."""
        if (ahead_s := self.ahead_s(leg)) > 0:
            await asyncio.sleep(ahead_s / self.info.speed)

    def press(self, leg: Leg, digit: str) -> None:
        """Queue a DTMF key pressed on a leg."""
        self.legs[leg].queue(DtmfFrame(leg=leg, digit=digit))

    def act(self, action: Action, *, actor: str, reason: str, leg: Leg | None = None) -> None:
        """Queue an action ahead of all audio: it is audited, carried out, then shown."""
        self.legs["agent"].queue(ActionFrame(action=action, leg=leg, actor=actor, reason=reason))

    async def end(self, reason: str) -> None:
        """Finish both legs, close the recording and write the call's end; safe to call more than once."""
        if self.ended_reason is not None:
            await self._done.wait()
            return
        self.ended_reason = reason
        if not self._admitted:  # refused or never started: nothing was recorded or audited
            self._done.set()
            return
        for pipeline in self.legs.values():
            pipeline.queue(EndFrame(reason=reason))
        await asyncio.gather(*self._tasks[:2], return_exceptions=True)
        for task in self._tasks[2:]:
            task.cancel()
        try:
            await self._write_end(reason)
        finally:  # whatever failed to be written, the call leaves the board and frees its slot
            self.board.calls.pop(self.call_id, None)
            self.board.keep_ended({**self.summary(), "events": list(self.events)})
            self.engines.admission.give_back()
            asyncio.get_running_loop().run_in_executor(self.engines.disk, trim_memory)
            self._done.set()

    async def _write_end(self, reason: str) -> None:
        """Close the recording, finish its row and write the call's end; a disk that fails is logged, not raised."""
        try:
            path = self.recording.close()
        except RecordingError as e:
            log.error("call %s: %s", self.call_id, e)
            path = None
        decoders = [p.processors[0] for p in self.legs.values()]
        flags = [{k: e[k] for k in ("leg", "rule", "category", "severity", "start_s", "end_s")}
                 for e in self.events if e["type"] == "flag" and not e.get("signal")]
        data = {"reason": reason, "duration_s": round(max(d.samples / (d.rate or 8000) for d in decoders), 2),
                "recordings": [path.name] if path else [], "flags": len(flags),
                "bad_packets": sum(d.bad_packets for d in decoders)}
        if self._registered:
            finish = partial(self.engines.recordings.finish, self.call_id, ended_at=self._now(),
                             duration_s=self.recording.duration_s, sample_rate=self.recording.sample_rate,
                             complete=self.recording.error is None, outcome=self.outcome, flags=flags,
                             agent_lines=self.agent_lines)
            await self._written(finish, "its recording's end")
        try:
            await self._audit("call_end", data, None)
        except Exception as e:  # the log's own fault is on /healthz; the call's end is in the serve log
            log.error("call %s: its end was not audited (%s)", self.call_id, type(e).__name__)
        self.emit({"type": "call_end", **data})

    async def _written(self, write: Callable[[], object], what: str) -> None:
        """Run a disk write; while it fails (a full disk, freed later), retry it every RETRY_WRITE_S in the background
        until shutdown. A recording left unfinished then is recovered as incomplete at the next start."""
        try:
            await asyncio.get_running_loop().run_in_executor(self.engines.disk, write)
        except Exception as e:  # the disk's fault is on /healthz; the write is tried again
            log.error("call %s: cannot write %s yet (%s); retrying", self.call_id, what, type(e).__name__)
            detach(self._written_later(write, what), name=f"{self.call_id}:retry")

    async def _written_later(self, write: Callable[[], object], what: str) -> None:
        await asyncio.sleep(RETRY_WRITE_S)
        await self._written(write, what)

    async def wait(self) -> None:
        """Wait until the call has ended and its records are written."""
        await self._done.wait()

    def mark_muted(self, leg: Leg, muted: bool) -> None:
        """Note a leg's mute state, as the adapter applied it."""
        (self.muted.add if muted else self.muted.discard)(leg)

    def emit(self, event: Event) -> None:
        event = {"call_id": self.call_id, **event}
        self.events.append(event)
        self.board.publish(event)

    async def _audit(self, kind: str, data: dict, actor: str | None) -> None:
        append = lambda: self.engines.audit.append(kind, data, call_id=self.call_id, actor=actor)  # noqa: E731
        await asyncio.get_running_loop().run_in_executor(self.engines.disk, append)

    async def _run_clock(self) -> None:
        clock = CallClock(self.engines.rules.pack, self._now(), self.info.zones)
        while True:
            if time.monotonic() - self._last_media > self.engines.admission.idle_timeout_s:
                self._end_idle()
                return
            for event in clock.tick(self._now()):
                now = time.monotonic()
                if event.action == "end_call":
                    flag = Flag(rule=WINDOW_RULE, category="call_time", severity="critical", action="end_call",
                                leg="agent", span=(0, 0), matched="")
                    self.legs["agent"].queue(ViolationFrame(flag=flag, final=True, detected_wall_s=now))
                action = "hangup" if event.action == "end_call" else "warn"
                self.legs["agent"].queue(ActionFrame(action=action, leg="agent", actor="clock", reason=event.reason,
                                                     rule=WINDOW_RULE, detected_wall_s=now))
            await asyncio.sleep(CLOCK_TICK_S)

    def _end_idle(self) -> None:
        """No media on either leg for the idle timeout: hang up through the adapter and end the call here too."""
        reason = f"no media for {self.engines.admission.idle_timeout_s:g} s"
        log.warning("call %s: %s; ending it", self.call_id, reason)
        self.act("hangup", actor="watchdog", reason=reason)
        detach(self.end(reason), name=f"{self.call_id}:idle")


def detach(work: Coroutine[object, object, None], *, name: str | None = None) -> asyncio.Task[None]:
    """Run `work` in a task that outlives its caller's cancellation (a reference is kept until it is done)."""
    task = asyncio.create_task(work, name=name)
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)
    return task


def trim_memory() -> None:
    """Hand freed heap back to the system (glibc keeps it otherwise: a recognizer frees ~70 MB when its call ends)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def build_leg_pipeline(call: Call, leg: Leg, control: CallControl) -> Pipeline:
    """The path of one leg's audio on a supervised call, top to bottom."""
    e = call.engines
    threads = e.executor if leg == "agent" else e.background  # the customer's leg may lag; enforcement may not
    return Pipeline([
        Decode(),
        Record(call.recording),
        VadGate(leg),
        Recognize(leg, e.asr, threads),
        *supervise(call, control, threads),
    ], name=f"{call.call_id[:8]}:{leg}")


def supervise(call: Call, control: CallControl, threads: Executor) -> list[Processor]:
    """The stages every leg ends with: rules and the semantic model (on the leg's `threads`), fail-safe, audit,
    enforcement, events."""
    e = call.engines
    return [
        CheckRules(call.monitor, threads),
        CheckMeaning(call.monitor, threads),
        FailSafe(),
        Audit(e.audit, call.call_id, e.disk, mode=call.info.mode, seal=sealer(e.recordings, call.call_id)),
        Enforce(control),
        Publish(call.emit, call.audio_wall_s),
    ]
