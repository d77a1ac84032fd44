"""The QA review page's transcript and flag list: flagged words marked as on the live console, and every flag listed
in the pack's own words, the customer's disputes and complaints included."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compliance_rules.engine import CallMonitor, Flag, RuleEngine
from recordings.screening import Screening, Utterance
from voicebot.web.login import Html, tag
from voicebot.web.words import Words

NEAR_S = 0.5
"""A stored flag belongs to an utterance of its leg that it starts within this much of."""
ALERTING = "alert"
SEVERITY_ORDER = ("signal", "info", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Listed:
    """One flag as the review page lists it."""

    start_s: float
    leg: str
    severity: str
    category: str
    rule: str
    words: str
    source: str


def clock(seconds: float | None) -> str:
    """m:ss, or a dash when unknown."""
    if seconds is None:
        return "—"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def heard_flags(rules: RuleEngine, transcript: list[Utterance]) -> list[tuple[Utterance, Flag]]:
    """Every rule hit in the transcript, signals included, read in call order as the live monitor reads it."""
    monitor = CallMonitor(rules)
    return [(u, flag) for u in transcript for flag in monitor.check(u.leg, u.text, final=True)]


def listed_flags(stored: list[dict[str, Any]], heard: list[tuple[Utterance, Flag]]) -> list[Listed]:
    """The stored flags (with the words a rule matched, where the transcript shows them) and the customer signals the
    pack alerts on (disputes, complaints), in call time order."""
    listed = []
    for f in stored:
        start = float(f.get("start_s") or 0.0)
        words = next((flag.matched for u, flag in heard if flag.rule == f.get("rule") and u.leg == f.get("leg")
                      and u.start_s - NEAR_S <= start <= u.end_s + NEAR_S), "")
        listed.append(Listed(start, str(f.get("leg", "")), str(f.get("severity", "low")), str(f.get("category", "")),
                             str(f.get("rule", "")), words, str(f.get("source", ""))))
    listed += [Listed(u.start_s, u.leg, "signal", "signal", flag.rule, flag.matched, "screen")
               for u, flag in heard if flag.category == "signal" and flag.action == ALERTING]
    return sorted(listed, key=lambda f: f.start_s)


def transcript_html(screening: Screening | None, heard: list[tuple[Utterance, Flag]],
                    listed: list[Listed], say: Words) -> Html:
    """The transcript as leg-labelled rows in time order, flagged words marked, each row seeking the player."""
    if screening is None or not screening.transcript:
        return tag("p", say("no_transcript" if screening is None else "no_speech"), class_="muted", id="no-transcript")
    rows = []
    for u in sorted(screening.transcript, key=lambda u: u.start_s):
        here = [f for f in listed if f.leg == u.leg and u.start_s - NEAR_S <= f.start_s <= u.end_s + NEAR_S]
        marks = [(flag.matched, "signal" if flag.category == "signal" else flag.severity) for v, flag in heard
                 if v is u and flag.matched and any(f.rule == flag.rule for f in here)]
        worst = max((f.severity for f in here), key=SEVERITY_ORDER.index, default=None)
        flagged = f" flagged sev-{worst}" if worst else ""
        rows.append(tag("li", tag("button", clock(u.start_s), type="button", class_="seek time", data_start=u.start_s),
                        tag("span", say(f"{u.leg}_leg"), class_="who"), marked(u.text, marks),
                        class_=f"line leg-{u.leg}{flagged}", data_start=u.start_s, data_leg=u.leg))
    return tag("ol", *rows, class_="transcript", id="transcript")


def marked(text: str, marks: list[tuple[str, str]]) -> Html:
    """The text with each matched phrase in a <mark> of its severity, everything escaped."""
    ranges = sorted((at, at + len(words), severity) for words, severity in marks
                    for at in _positions(text, words))
    parts, pos = [], 0
    for start, end, severity in ranges:
        if start < pos:
            continue
        parts += [text[pos:start], tag("mark", text[start:end], class_=f"sev-{severity}")]
        pos = end
    return tag("span", *parts, text[pos:], class_="text")


def _positions(text: str, words: str) -> list[int]:
    found, at = [], text.find(words)
    while words and at >= 0:
        found.append(at)
        at = text.find(words, at + len(words))
    return found


def flags_html(listed: list[Listed], categories: dict[str, str], rules: dict[str, str], say: Words) -> Html:
    """Every flag in full: time (seeks the player), severity, what it is in the pack's words, the rule, leg and
    source, and the words it matched."""
    if not listed:
        return tag("p", say("no_flags"), class_="muted")
    rows = []
    for f in listed:
        what = rules.get(f.rule, f.rule) if f.category == "signal" else categories.get(f.category, f.category)
        rows.append(tag("li", tag("button", clock(f.start_s), type="button", class_="seek", data_start=f.start_s),
                        tag("span", f.severity, class_="badge"), tag("span", what, class_="category"),
                        tag("q", f.words, class_="matched") if f.words else "",
                        tag("span", _where(f, rules, say), class_="muted rule"),
                        class_=f"flag sev-{f.severity}", data_start=f.start_s, data_category=f.category,
                        data_rule=f.rule))
    return tag("ol", *rows, class_="events", id="flags")


def _where(f: Listed, rules: dict[str, str], say: Words) -> str:
    """A listed flag's leg, rule (not repeated for a signal, which is named by it) and source."""
    rule = "" if f.category == "signal" else rules.get(f.rule, f.rule)
    return " · ".join(part for part in (say(f"{f.leg}_leg") if f.leg else "", rule, f.source) if part)
