"""Rule packs: YAML files validated on load, with errors that name the file, line and field."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Literal

import yaml

Leg = Literal["agent", "customer"]
SEVERITIES = ("info", "low", "medium", "high", "critical")
ACTIONS = ("log", "alert", "warn", "mute", "end_call")
STATES = ("verified", "unverified", "disputed", "third_party")
SIGNAL_STATES = ("verified", "disputed", "third_party")
LEGS = ("agent", "customer", "any")
PACKS_DIR = Path(__file__).parent / "packs"


class RulePackError(ValueError):
    """A rule pack that cannot be used; names the file, the line and what is wrong."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = Path(path), line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


ErrorType = Callable[[Path, int | None, str], Exception]
"""How a YAML file's faults are raised: `error(path, line, reason)`, e.g. RulePackError."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One rule: what it watches, what it matches, what it excludes, and how serious a hit is."""

    id: str
    category: str
    severity: str
    leg: str
    action: str
    phrases: tuple[str, ...] = ()
    sounds_like: tuple[str, ...] = ()
    """Short phrases that also match by sound (ASR wrote 老来 for 老赖); longer phrases always do."""
    patterns: tuple[str, ...] = ()
    exceptions: tuple[str, ...] = ()
    """Regexes for lawful look-alikes: a hit that overlaps one is dropped."""
    unless: tuple[str, ...] = ()
    """Regexes for lawful contexts (a fraud warning, a negation): anywhere in the utterance, they drop every hit."""
    when: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    """Regexes over the other leg's last utterance (normalised): the rule holds only in answer to one of them."""
    sets: str | None = None
    homophones: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallWindow:
    """Local hours in which calls are allowed, and how early a live call is warned before the end."""

    start: time
    end: time
    warn_before_end_min: int = 5
    fallback_zones: tuple[str, ...] = ()
    """Zones assumed when an account's zone is unknown: all of them must be inside the window."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CadenceLimit:
    """At most `calls` dial attempts per debt in any `days` rolling days."""

    calls: int
    days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RulePack:
    """A loaded, validated rule pack."""

    name: str
    path: Path
    language: str
    rules: tuple[Rule, ...]
    window: CallWindow
    cadence: tuple[CadenceLimit, ...] = ()
    quiet_days_after_conversation: int = 0
    actions: dict[str, str] = field(default_factory=dict)
    model_categories: dict[str, str] = field(default_factory=dict)
    """The semantic model's categories this pack flags, each with its severity (the pack's `model:` section)."""
    categories: dict[str, str] = field(default_factory=dict)
    """What each category is called where people read it (the pack's `categories:` section)."""


class _LineStr(str):
    line: int


class _LineDict(dict):
    line: int


class LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping and string (as a `.line` attribute)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _LineDict:
        mapping = _LineDict(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        return mapping


def _construct_str(loader: LineLoader, node: yaml.ScalarNode) -> _LineStr:
    value = _LineStr(loader.construct_scalar(node))
    value.line = node.start_mark.line + 1
    return value


LineLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
LineLoader.add_constructor("tag:yaml.org,2002:map", LineLoader.construct_mapping)


def pack_path(name_or_path: str | Path) -> Path:
    """A bundled pack by name (`cn-collection`), or a path to a pack file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    bundled = PACKS_DIR / f"{name_or_path}.yaml"
    if not bundled.is_file():
        known = ", ".join(sorted(p.stem for p in PACKS_DIR.glob("*.yaml")))
        raise RulePackError(path, None, f"no such rule pack; bundled packs: {known}")
    return bundled


def load_pack(name_or_path: str | Path) -> RulePack:
    """Read and validate a pack; raise RulePackError naming the line and field at fault."""
    path = pack_path(name_or_path)
    return _Validator(path).pack(read_yaml(path))


def read_yaml(path: Path, error: ErrorType = RulePackError) -> Any:
    """Parse a YAML file with LineLoader; unreadable or malformed files raise `error(path, line, reason)`."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=LineLoader)
    except OSError as e:
        raise error(path, None, f"cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise error(path, None, "not UTF-8 text") from e
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise error(path, line, f"invalid YAML: {e.problem}") from e


class FieldValidator:
    """Checks fields of YAML parsed by LineLoader, raising `error(path, line, reason)` at the first fault."""

    def __init__(self, path: Path, error: ErrorType = RulePackError) -> None:
        self.path, self.error = path, error

    def fail(self, where: Any, reason: str) -> Exception:
        """The error to raise for `where` (a value read by LineLoader, so it knows its line)."""
        return self.error(self.path, getattr(where, "line", None), reason)

    def mapping(self, value: Any, what: str, allowed: set[str], required: set[str]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(value, f"{what} must be a mapping")
        for key in value:
            if key not in allowed:
                raise self.fail(key, f"{what}: unknown field '{key}' (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - set(value)):
            raise self.fail(value, f"{what}: missing field '{key}'")
        return value

    def text(self, value: Any, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(value, f"{what} must be a non-empty string")
        return value  # keeps its line for later errors

    def choice(self, value: Any, what: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(value, f"{what} must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    def texts(self, value: Any, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(value, f"{what} must be a list")
        return tuple(self.text(v, f"{what} item") for v in value)

    def regexes(self, value: Any, what: str) -> tuple[str, ...]:
        items = self.texts(value, what)
        for item in items:
            try:
                re.compile(item)
            except re.error as e:
                raise self.fail(item, f"{what}: bad regular expression {item!r}: {e.msg}") from e
        return items


class _Validator(FieldValidator):
    """Turns parsed YAML into a RulePack, raising RulePackError at the first fault."""

    def pack(self, data: Any) -> RulePack:
        top = self.mapping(data, "pack", {"pack", "description", "language", "window", "cadence", "actions",
                                          "rules", "model", "categories"},
                           {"pack", "language", "window", "actions", "rules"})
        actions = self.mapping(top["actions"], "actions", set(SEVERITIES), set(SEVERITIES))
        actions = {str(k): self.choice(v, f"actions.{k}", ACTIONS) for k, v in actions.items()}
        if not isinstance(top["rules"], list) or not top["rules"]:
            raise self.fail(top, "rules must be a non-empty list")
        rules = tuple(self.rule(r, actions) for r in top["rules"])
        seen: set[str] = set()
        for raw, rule in zip(top["rules"], rules, strict=True):
            if rule.id in seen:
                raise self.fail(raw, f"duplicate rule id '{rule.id}'")
            seen.add(rule.id)
        limits, quiet_days = self.cadence(top.get("cadence"))
        return RulePack(name=self.text(top["pack"], "pack"), path=self.path,
                        language=self.text(top["language"], "language"), rules=rules,
                        window=self.window(top["window"]), cadence=limits,
                        quiet_days_after_conversation=quiet_days, actions=actions,
                        model_categories=self.model(top.get("model")),
                        categories=self.categories(top.get("categories")))

    def categories(self, raw: Any) -> dict[str, str]:
        if raw is None:
            return {}
        names = self.mapping(raw, "categories", set(raw or {}), set())
        return {self.text(c, "categories key"): self.text(d, f"categories.{c}") for c, d in names.items()}

    def model(self, raw: Any) -> dict[str, str]:
        if raw is None:
            return {}
        m = self.mapping(raw, "model", {"categories"}, {"categories"})
        categories = self.mapping(m["categories"], "model.categories", set(m["categories"] or {}), set())
        return {self.text(c, "model.categories key"): self.choice(s, f"model.categories.{c}", SEVERITIES)
                for c, s in categories.items()}

    def rule(self, raw: Any, actions: dict[str, str]) -> Rule:
        r = self.mapping(raw, "rule", {"id", "category", "severity", "leg", "action", "phrases", "sounds_like",
                                       "patterns", "exceptions", "unless", "when", "after", "sets",
                                       "homophones", "description"},
                         {"id", "category", "severity", "leg"})
        rule_id = self.text(r["id"], "id")
        where = f"rule {rule_id}"
        severity = self.choice(r["severity"], f"{where}: severity", SEVERITIES)
        phrases = self.texts(r.get("phrases"), f"{where}: phrases")
        sounds_like = self.texts(r.get("sounds_like"), f"{where}: sounds_like")
        patterns = self.regexes(r.get("patterns"), f"{where}: patterns")
        if not phrases and not sounds_like and not patterns:
            raise self.fail(r, f"{where}: needs at least one of phrases, sounds_like or patterns")
        when = self.texts(r.get("when"), f"{where}: when")
        for state in when:
            self.choice(state, f"{where}: when", STATES)
        homophones = r.get("homophones", True)
        if not isinstance(homophones, bool):
            raise self.fail(r, f"{where}: homophones must be true or false")
        return Rule(
            id=rule_id, category=self.text(r["category"], f"{where}: category"), severity=severity,
            leg=self.choice(r["leg"], f"{where}: leg", LEGS),
            action=self.choice(r["action"], f"{where}: action", ACTIONS) if "action" in r else actions[severity],
            phrases=phrases, sounds_like=sounds_like, patterns=patterns,
            exceptions=self.regexes(r.get("exceptions"), f"{where}: exceptions"),
            unless=self.regexes(r.get("unless"), f"{where}: unless"),
            when=when, after=self.regexes(r.get("after"), f"{where}: after"), homophones=homophones,
            description=str(r.get("description", "")),
            sets=self.choice(r["sets"], f"{where}: sets", SIGNAL_STATES) if "sets" in r else None,
        )

    def window(self, raw: Any) -> CallWindow:
        w = self.mapping(raw, "window", {"start", "end", "warn_before_end_min", "fallback_zones"},
                         {"start", "end", "fallback_zones"})
        zones = self.texts(w["fallback_zones"], "window.fallback_zones")
        for zone in zones:
            try:
                zoneinfo.ZoneInfo(zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
                raise self.fail(zone, f"window.fallback_zones: unknown time zone {zone!r}") from e
        start, end = self.clock(w["start"], "window.start"), self.clock(w["end"], "window.end")
        if not start < end:
            raise self.fail(w, "window.start must be before window.end")
        return CallWindow(start=start, end=end, warn_before_end_min=self.count(w.get("warn_before_end_min", 5), w,
                          "window.warn_before_end_min"), fallback_zones=zones)

    def cadence(self, raw: Any) -> tuple[tuple[CadenceLimit, ...], int]:
        if raw is None:
            return (), 0
        c = self.mapping(raw, "cadence", {"limits", "quiet_days_after_conversation"}, set())
        limits = c.get("limits") or []
        if not isinstance(limits, list):
            raise self.fail(c, "cadence.limits must be a list")
        parsed = []
        for item in limits:
            m = self.mapping(item, "cadence.limits item", {"calls", "days"}, {"calls", "days"})
            parsed.append(CadenceLimit(calls=self.count(m["calls"], m, "calls"), days=self.count(m["days"], m, "days")))
        quiet = self.count(c.get("quiet_days_after_conversation", 0), c, "cadence.quiet_days_after_conversation")
        return tuple(parsed), quiet

    def clock(self, value: Any, what: str) -> time:
        if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}", value):
            raise self.fail(value, f"{what} must be a quoted HH:MM time")
        try:
            return time.fromisoformat(value)
        except ValueError as e:
            raise self.fail(value, f"{what}: {value!r} is not a time of day") from e

    def count(self, value: Any, where: Any, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(where, f"{what} must be a whole number ≥ 0")
        return value
