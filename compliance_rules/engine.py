"""The rule engine: matches a leg's utterance against a pack, given what the call has established so far."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from compliance_rules.matching import Hit, Normalized, PhraseIndex, normalize
from compliance_rules.pack import Rule, RulePack, load_pack

SENTENCE_END = re.compile(r"[。！？；!?;]|\.(?:\s|$)")
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


@dataclass(slots=True)
class CallState:
    """What the call has established: identity verified, debt disputed, a third party on the line."""

    verified: bool = True
    disputed: bool = False
    third_party: bool = False

    @classmethod
    def of(cls, context: str) -> CallState:
        """The state a labelled line's context names: empty (verified), `unverified`, `third_party` or `disputed`."""
        return cls(verified=context != "unverified", disputed=context == "disputed",
                   third_party=context == "third_party")

    def holds(self, condition: str) -> bool:
        """Whether a rule's `when` condition holds now."""
        if condition == "unverified":
            return not self.verified
        return bool(getattr(self, condition))


@dataclass(frozen=True, slots=True)
class Flag:
    """A rule hit in one utterance: a violation, or a customer signal (category `signal`)."""

    rule: str
    category: str
    severity: str
    action: str
    leg: str
    span: tuple[int, int]
    """[start, end) character offsets in the utterance as given."""
    matched: str
    sets: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    source: str = "rule"
    """`rule` (a pack's phrase or pattern) or `model` (the semantic detector)."""
    score: float | None = None
    """The model's probability for the category; None for rule flags."""
    model: str | None = None
    """The version of the model that raised the flag."""


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A recognised word and its call time, as the recognizer gives it."""

    word: str
    start_s: float
    end_s: float


class RuleEngine:
    """A compiled pack: `check()` finds every rule that an utterance breaks or signals."""

    def __init__(self, pack: RulePack) -> None:
        self.pack = pack
        self.rules = {rule.id: rule for rule in pack.rules}
        self._order = {rule.id: i for i, rule in enumerate(pack.rules)}
        self._index = PhraseIndex()
        self._exceptions: dict[str, list[re.Pattern[str]]] = {}
        self._unless: dict[str, list[re.Pattern[str]]] = {}
        self._after = {rule.id: [re.compile(p) for p in rule.after] for rule in pack.rules}
        for rule in pack.rules:
            for phrase in rule.phrases:
                self._index.add_phrase(rule.id, phrase, homophones=rule.homophones)
            for phrase in rule.sounds_like:
                self._index.add_phrase(rule.id, phrase, homophones=True, force_homophones=True)
            for pattern in rule.patterns:
                self._index.add_pattern(rule.id, pattern)
            self._exceptions[rule.id] = [re.compile(p) for p in rule.exceptions]
            self._unless[rule.id] = [re.compile(p) for p in rule.unless]

    @classmethod
    def from_pack(cls, name_or_path: str | Path) -> RuleEngine:
        """Load and compile a bundled pack by name, or a pack file."""
        return cls(load_pack(name_or_path))

    def check(self, leg: str, text: str, state: CallState | None = None,
              words: Sequence[TimedWord] = (), previous: str = "") -> list[Flag]:
        """Flags raised by `text` spoken on `leg`, in order of position; overlapping hits give one flag.

        `previous` is the other leg's last utterance: rules with `after` hold only in answer to it."""
        state = state or CallState()
        norm = normalize(text)
        asked = normalize(previous).text
        flags: list[Flag] = []
        taken: list[tuple[int, int]] = []
        for hit in sorted(self._index.find(norm.text), key=lambda h: (self._order[h.key], h.start, -h.end)):
            rule = self.rules[hit.key]
            if not self._applies(rule, leg, state, asked) or self._excepted(rule, hit, norm.text, text, norm):
                continue
            if any(hit.start < end and start < hit.end for start, end in taken):
                continue  # one flag per stretch of speech: the rule listed first in the pack wins
            taken.append((hit.start, hit.end))
            span = norm.original_span(hit.start, hit.end)
            start_s, end_s = word_times(text, words, span)
            flags.append(Flag(
                rule=rule.id, category=rule.category, severity=rule.severity, action=rule.action, leg=leg,
                span=span, matched=text[span[0] : span[1]], sets=rule.sets, start_s=start_s, end_s=end_s,
            ))
        return sorted(flags, key=lambda f: f.span)

    def _applies(self, rule: Rule, leg: str, state: CallState, asked: str) -> bool:
        after = self._after[rule.id]
        return (rule.leg in (leg, "any") and all(state.holds(c) for c in rule.when)
                and (not after or any(p.search(asked) for p in after)))

    def _excepted(self, rule: Rule, hit: Hit, text: str, original: str, norm: Normalized) -> bool:
        unless = self._unless[rule.id]
        if unless and any(p.search(sentence_around(original, norm.original_span(hit.start, hit.end)[0]))
                          for p in unless):
            return True
        return any(m.start() < hit.end and hit.start < m.end()
                   for p in self._exceptions[rule.id] for m in p.finditer(text))


def sentence_around(text: str, at: int) -> str:
    """The normalised sentence of `text` that holds character `at`, and the one after it (an answer to a quoted
    question): `unless` contexts count only there, never from an earlier sentence."""
    start = max((m.end() for m in SENTENCE_END.finditer(text, 0, at)), default=0)
    ends = [m.start() for m in itertools.islice(SENTENCE_END.finditer(text, at), 2)]
    end = ends[-1] if len(ends) == 2 else len(text)
    return normalize(text[start:end]).text


def word_times(text: str, words: Sequence[TimedWord], span: tuple[int, int]) -> tuple[float | None, float | None]:
    """Call times of the words that cover a character span of `text` (None without words)."""
    cursor, start_s, end_s = 0, None, None
    for word in words:
        at = text.find(word.word, cursor)
        if at < 0:
            continue
        cursor = at + len(word.word)
        if at < span[1] and span[0] < cursor:
            start_s = word.start_s if start_s is None else start_s
            end_s = word.end_s
    return start_s, end_s


@dataclass
class CallMonitor:
    """Checks one live call as results stream in: tracks call state and never flags the same hit twice.

    `check` runs the rules on every result; `check_meaning`, called after it for the same result, runs the
    semantic model and skips a category the rules (or an earlier model check) already flagged in the utterance."""

    engine: RuleEngine
    state: CallState = field(default_factory=lambda: CallState(verified=False))
    model: SemanticChecker | None = None
    _utterance: dict[str, int] = field(default_factory=dict)
    _ended: set[str] = field(default_factory=set)
    _raised: dict[tuple[str, int, str], int] = field(default_factory=dict)
    _categories: dict[str, set[str]] = field(default_factory=dict)
    _last_final: dict[str, str] = field(default_factory=dict)
    _warned: dict[str, int] = field(default_factory=dict)

    def check(self, leg: str, text: str, *, final: bool, words: Sequence[TimedWord] = ()) -> list[Flag]:
        """New rule flags for a partial or final result of the leg's current utterance."""
        if leg in self._ended:  # the first result after a final starts the leg's next utterance
            self._ended.discard(leg)
            self._utterance[leg] = self._utterance.get(leg, 0) + 1
            self._categories[leg] = set()
        utterance = self._utterance.get(leg, 0)
        new: list[Flag] = []
        counts: dict[str, int] = {}
        for flag in self.engine.check(leg, text, self.state, words, self._previous(leg)):
            counts[flag.rule] = counts.get(flag.rule, 0) + 1
            key = (leg, utterance, flag.rule)
            if counts[flag.rule] > self._raised.get(key, 0):
                self._raised[key] = counts[flag.rule]
                new.append(flag)
        self._set_state(new)
        self._categories.setdefault(leg, set()).update(f.category for f in new)
        if final:
            self._ended.add(leg)
            self._last_final[leg] = text
        return new

    def first_warning(self, leg: str) -> bool:
        """Whether the leg's current utterance has not been warned about yet; notes that it now has."""
        utterance = self._utterance.get(leg, 0)
        if self._warned.get(leg) == utterance:
            return False
        self._warned[leg] = utterance
        return True

    def may_overrule(self, flags: Sequence[Flag]) -> bool:
        """Whether the model could overrule any of these rule flags (there is a model, and a flag not a signal)."""
        return self.model is not None and any(f.category != "signal" for f in flags)

    def confirm(self, leg: str, text: str, flags: Sequence[Flag]) -> list[Flag]:
        """The rule flags from `check` that stand once the model has read `text` (all of them without a model); a
        category whose flags the model overruled may still be flagged by `check_meaning`."""
        if self.model is None or not self.may_overrule(flags):
            return list(flags)
        standing = self.model.confirm(leg, text, self.state, flags)
        self._categories.setdefault(leg, set()).difference_update(
            {f.category for f in flags} - {f.category for f in standing})
        return standing

    def check_all(self, leg: str, text: str, *, final: bool = True, words: Sequence[TimedWord] = ()) -> list[Flag]:
        """`check`, `confirm` and `check_meaning` of one result, in order: every new flag the rules and the model
        raise for it, for reading a call after the fact."""
        flags = self.confirm(leg, text, self.check(leg, text, final=final, words=words))
        return flags + self.check_meaning(leg, text)

    def check_meaning(self, leg: str, text: str) -> list[Flag]:
        """New model flags for the result just given to `check` (none without a model)."""
        if self.model is None:
            return []
        seen = self._categories.setdefault(leg, set())
        new = [f for f in self.model.check(leg, text, self.state, self._previous(leg))
               if f.category not in seen or f.sets]
        seen.update(f.category for f in new)
        self._set_state(new)
        return new

    def _previous(self, leg: str) -> str:
        """The other leg's last final: what `leg` is answering."""
        return self._last_final.get("customer" if leg == "agent" else "agent", "")

    def _set_state(self, flags: Sequence[Flag]) -> None:
        """Follow what the signals among `flags` establish."""
        for flag in flags:
            if flag.sets == "third_party":
                self.state.third_party, self.state.verified = True, False
            elif flag.sets == "verified":  # the debtor has come to the phone
                self.state.verified, self.state.third_party = True, False
            elif flag.sets:
                setattr(self.state, flag.sets, True)


class SemanticChecker(Protocol):
    """What CallMonitor needs of the semantic detector (compliance_rules.detector.SemanticDetector)."""

    def check(self, leg: str, text: str, state: CallState | None = None, previous: str = "") -> list[Flag]: ...

    def confirm(self, leg: str, text: str, state: CallState, flags: Sequence[Flag]) -> list[Flag]: ...


def strongest(flags: Sequence[Flag]) -> Flag | None:
    """The most severe flag, if any."""
    return max(flags, key=lambda f: SEVERITY_RANK[f.severity], default=None)
