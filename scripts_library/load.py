"""Dialog scripts: YAML files validated on load, every line checked by the rule engine in the state it is said in."""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import CallState, RuleEngine
from compliance_rules.pack import FieldValidator, RulePackError, read_yaml

SCRIPTS_DIR = Path(__file__).parent
LANGUAGES = ("zh", "en")
STAGES = ("early", "middle", "late", "any")
STATES: dict[str, CallState] = {
    "unverified": CallState(verified=False),
    "third_party": CallState(verified=False, third_party=True),
    "verified": CallState(verified=True),
    "disputed": CallState(verified=False, disputed=True, third_party=True),
}
"""The call states a line can be said in. A dispute can come before verification, even from a third party, so
`disputed` is the strictest reading: the disclosure, third-party and pressing-on rules all apply."""
PRE = ("unverified", "third_party")
VERIFIED = ("verified",)
DISPUTED = ("disputed",)
ANY = ("unverified", "third_party", "verified", "disputed")
ACCOUNT_VALUES = frozenset({"name", "lender", "company", "agent_id"})
"""Placeholders any line may use: who is called, for whom, by whom."""
DEBT_VALUES = frozenset({"amount", "due_date"})
"""Placeholders that disclose the debt: only in lines said after verification."""
MAX_TEXT = {"name": 32, "lender": 48, "company": 48}
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,15}")
MAX_AMOUNT = Decimal(10) ** 9
SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.] )")
UNSAFE_CHARS = frozenset("{}<>&\\")
"""Dropped from text values: template and SSML/markup syntax that a TTS engine might interpret."""


class ScriptError(ValueError):
    """A script that cannot be used; names the file, the line and what is wrong."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = Path(path), line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


class ScriptFillError(ValueError):
    """A line that cannot be filled with the given values; the message never contains the values."""


@dataclass(frozen=True, slots=True)
class LineSpec:
    """Where the dialog says a line (the states it is checked in) and the call-time values it is filled with."""

    states: tuple[str, ...]
    call_values: frozenset[str] = frozenset()


def _spec(states: tuple[str, ...], *call_values: str) -> LineSpec:
    return LineSpec(states, frozenset(call_values))


LINES: dict[str, LineSpec] = {
    "opening": _spec(PRE), "ask_name": _spec(PRE), "ask_id_digits": _spec(PRE), "id_retry": _spec(PRE),
    "verify_why": _spec(PRE), "verify_failed": _spec(PRE), "third_party_callback": _spec(PRE),
    "wrong_person_sorry": _spec(PRE), "ask_callback_time": _spec(ANY),
    "callback_confirm": _spec(ANY, "callback_time"), "callback_outside_hours": _spec(ANY, "callback_time"),
    "verified_disclosure": _spec(VERIFIED), "ask_payment": _spec(VERIFIED), "ask_date": _spec(VERIFIED),
    "ask_amount": _spec(VERIFIED), "confirm_promise": _spec(VERIFIED, "date", "amount"),
    "promise_noted": _spec(VERIFIED), "restate": _spec(VERIFIED), "offer_plan": _spec(VERIFIED),
    "confirm_plan": _spec(VERIFIED, "date", "amount"), "plan_followup": _spec(VERIFIED),
    "dispute_logged": _spec(DISPUTED), "already_paid_ack": _spec(DISPUTED), "complaint_ack": _spec(ANY),
    "offer_transfer": _spec(ANY), "transfer": _spec(ANY), "not_understood": _spec(ANY),
    "silence_prompt": _spec(ANY), "goodbye": _spec(ANY), "max_length_goodbye": _spec(ANY),
}
"""Every line a script must define. In confirm_promise and confirm_plan, {amount} and {date} are the promise's."""
PLACEHOLDERS = ACCOUNT_VALUES | DEBT_VALUES | {"date", "callback_time"}

SAMPLES: dict[str, dict[str, object]] = {
    "zh": {"name": "张伟", "lender": "示例银行", "company": "示例信息服务有限公司", "agent_id": "A017",
           "amount": Decimal("3260.50"), "due_date": date(2026, 4, 20), "date": date(2026, 5, 22),
           "callback_time": datetime.fromisoformat("2026-05-21T15:30+08:00")},
    "en": {"name": "Jordan Lee", "lender": "Example Bank", "company": "Example Recovery Services",
           "agent_id": "A017", "amount": Decimal("3260.50"), "due_date": date(2026, 4, 20),
           "date": date(2026, 5, 22), "callback_time": datetime.fromisoformat("2026-05-21T15:30-04:00")},
}
"""Values a script is checked with at load time; each fill is checked again with the real values."""


@dataclass(frozen=True, slots=True)
class ScriptLine:
    """One line of a script: its text template, the placeholders it uses and where it is written."""

    id: str
    text: str
    placeholders: frozenset[str]
    states: tuple[str, ...]
    line: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Script:
    """A loaded script whose every line passed the rule engine; `fill()` gives a line's text for one call."""

    id: str
    path: Path
    language: str
    stage: str
    pack: str
    days: tuple[int, int | None]
    lines: dict[str, ScriptLine]
    engine: RuleEngine = field(repr=False, compare=False)
    description: str = ""

    def covers(self, days_overdue: int) -> bool:
        """Whether this script is for a debt this many days overdue."""
        low, high = self.days
        return low <= days_overdue and (high is None or days_overdue <= high)

    def fill(self, line_id: str, values: Mapping[str, object]) -> str:
        """The line's text with `values` formatted safely; refused if the result breaks a rule."""
        line = self.lines.get(line_id)
        if line is None:
            raise ScriptFillError(f"script {self.id} has no line {line_id!r}")
        missing = sorted(line.placeholders - set(values))
        if missing:
            raise ScriptFillError(f"script {self.id}, line {line_id}: no value for {{{missing[0]}}}")
        formatted = {key: format_value(key, values[key], self.language) for key in line.placeholders}
        text = line.text.format_map(formatted)
        values_alone = [formatted[key] for key in sorted(line.placeholders & set(MAX_TEXT))]
        broken = first_violation(self.engine, text, line.states, extra=values_alone)
        if broken:
            state, rule = broken
            raise ScriptFillError(f"script {self.id}, line {line_id}: with these values the line breaks rule "
                                  f"{rule} when said {state}; check the account's name, lender and company")
        return text


def first_violation(engine: RuleEngine, text: str, states: tuple[str, ...],
                    extra: list[str] | None = None, meaning: SemanticDetector | None = None) -> tuple[str, str] | None:
    """(state, rule id) of the first rule the bot breaks by saying `text` in one of `states`, if any; with
    `meaning`, a line the semantic model flags in one of the states breaks `model.<category>` too.

    Each sentence and each `extra` piece is checked on its own as well: a pack's `unless` context (私人事务)
    drops every hit in an utterance, so a neighbouring sentence or a filled-in value could otherwise hide one.
    """
    sentences = [part for part in SENTENCE_END.split(text) if part.strip()]
    pieces = [text, *(sentences if len(sentences) > 1 else []), *(extra or [])]
    for state in states:
        for piece in pieces:
            for flag in engine.check("agent", piece, STATES[state]):
                if flag.category != "signal":
                    return state, flag.rule
    if meaning is not None:
        read = meaning.check_many("agent", [text] * len(states), [STATES[state] for state in states])
        for state, flags in zip(states, read, strict=True):
            for flag in flags:
                return state, f"{flag.rule} (score {flag.score:.2f}, model {flag.model})"
    return None


def clean_text(key: str, value: object) -> str:
    """A name, lender or company: NFKC, no control/format characters or markup, one space between words."""
    if not isinstance(value, str):
        raise ScriptFillError(f"{key} must be text")
    kept = "".join(" " if c.isspace() else c for c in unicodedata.normalize("NFKC", value)
                   if c.isspace() or (unicodedata.category(c)[0] != "C" and c not in UNSAFE_CHARS))
    text = " ".join(kept.split())
    if not text:
        raise ScriptFillError(f"{key} is empty once control characters and markup are removed")
    if len(text) > MAX_TEXT[key]:
        raise ScriptFillError(f"{key} is longer than {MAX_TEXT[key]} characters")
    return text


def to_amount(value: object) -> Decimal:
    """An amount of money as Decimal cents, 0 < amount < 10⁹; refuses anything else."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ScriptFillError("amount must be a number")
    try:
        amount = Decimal(str(value).strip()).quantize(Decimal("0.01"))
    except InvalidOperation as e:
        raise ScriptFillError("amount is not a number") from e
    if not amount.is_finite() or not 0 < amount < MAX_AMOUNT:
        raise ScriptFillError("amount must be more than 0 and less than 1,000,000,000")
    return amount


def to_date(key: str, value: object) -> date:
    """A calendar date (a datetime gives its date; text must be ISO YYYY-MM-DD) between 2000 and 2100."""
    if isinstance(value, datetime):
        value = value.date()
    elif isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError as e:
            raise ScriptFillError(f"{key} must be an ISO date (YYYY-MM-DD)") from e
    if not isinstance(value, date) or not 2000 <= value.year <= 2100:
        raise ScriptFillError(f"{key} must be a date between 2000 and 2100")
    return value


MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def format_amount(amount: Decimal, language: str) -> str:
    """Money as a TTS engine reads it: 3260.50元 / 3200元, $3,260.50 / $3,200."""
    whole = amount == amount.to_integral_value()
    if language == "zh":
        return f"{amount:.0f}元" if whole else f"{amount:.2f}元"
    return f"${amount:,.0f}" if whole else f"${amount:,.2f}"


def format_date(day: date, language: str) -> str:
    """2026年5月22日 / May 22, 2026."""
    if language == "zh":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{MONTHS_EN[day.month - 1]} {day.day}, {day.year}"


def format_time(at: datetime, language: str) -> str:
    """A callback time in the zone it carries: 5月21日下午3点30分 / Thursday, May 21 at 3:30 PM."""
    if at.tzinfo is None:
        raise ScriptFillError("callback_time must carry its time zone")
    hour12 = at.hour % 12 or 12
    if language == "en":
        return (f"{WEEKDAYS_EN[at.weekday()]}, {MONTHS_EN[at.month - 1]} {at.day} at "
                f"{hour12}:{at.minute:02d} {'AM' if at.hour < 12 else 'PM'}")
    period = "上午" if at.hour < 12 else "中午" if at.hour < 13 else "下午" if at.hour < 18 else "晚上"
    return f"{at.month}月{at.day}日{period}{hour12}点" + (f"{at.minute}分" if at.minute else "")


def format_value(key: str, value: object, language: str) -> str:
    """One placeholder's value, validated and normalised for `language`."""
    if key in MAX_TEXT:
        return clean_text(key, value)
    if key == "agent_id":
        if not isinstance(value, str) or not AGENT_ID.fullmatch(value):
            raise ScriptFillError("agent_id must be 1–16 letters, digits or dashes")
        return value
    if key == "amount":
        return format_amount(to_amount(value), language)
    if key in ("due_date", "date"):
        return format_date(to_date(key, value), language)
    if key == "callback_time":
        if not isinstance(value, datetime):
            raise ScriptFillError("callback_time must be a datetime")
        return format_time(value, language)
    raise ScriptFillError(f"unknown placeholder {{{key}}}")


def script_path(name_or_path: str | Path) -> Path:
    """A bundled script by name (`cn-early`), or a path to a script file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    bundled = SCRIPTS_DIR / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ScriptError(path, None, f"no such script; bundled scripts: {', '.join(bundled_scripts())}")
    return bundled


def bundled_scripts() -> list[str]:
    """Names of the scripts shipped with the package."""
    return sorted(p.stem for p in SCRIPTS_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=8)
def _bundled_engine(pack: str) -> RuleEngine:
    return RuleEngine.from_pack(pack)


def load_script(name_or_path: str | Path, *, rules: RuleEngine | None = None) -> Script:
    """Read, validate and rule-check a script; raise ScriptError naming the line at fault."""
    path = script_path(name_or_path)
    return _Validator(path, ScriptError).script(read_yaml(path, ScriptError), rules)


def select_script(days_overdue: int, language: str) -> Script:
    """The bundled script for a debt this many days overdue, in `language`."""
    for name in bundled_scripts():
        script = bundled_script(name)
        if script.language == language and script.covers(days_overdue):
            return script
    raise ScriptError(SCRIPTS_DIR, None, f"no bundled {language} script covers {days_overdue} days overdue")


def bundled_languages() -> tuple[str, ...]:
    """The languages the bundled scripts speak, sorted."""
    return tuple(sorted({bundled_script(name).language for name in bundled_scripts()}))


@functools.lru_cache(maxsize=32)
def bundled_script(name: str) -> Script:
    """A bundled script by name, loaded once per process; ScriptError if there is none."""
    return load_script(name)


class _Validator(FieldValidator):
    """Turns parsed YAML into a Script, raising ScriptError at the first fault."""

    def script(self, data: Any, rules: RuleEngine | None) -> Script:
        top = self.mapping(data, "script", {"id", "language", "stage", "pack", "days", "description", "lines"},
                           {"id", "language", "stage", "pack", "days", "lines"})
        script_id = self.text(top["id"], "id")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", script_id):
            raise self.fail(script_id, "id must be lower-case letters, digits and dashes")
        language = self.choice(top["language"], "language", LANGUAGES)
        engine = self.engine(top["pack"], language, rules)
        lines = self.lines(top["lines"], language, engine)
        return Script(id=script_id, path=self.path, language=language,
                      stage=self.choice(top["stage"], "stage", STAGES), pack=str(top["pack"]),
                      days=self.days(top["days"], _key(top, "days")), lines=lines, engine=engine,
                      description=str(top.get("description", "")))

    def engine(self, pack: Any, language: str, rules: RuleEngine | None) -> RuleEngine:
        name = self.text(pack, "pack")
        try:
            engine = rules or _bundled_engine(name)
        except RulePackError as e:
            raise self.fail(pack, f"pack {name!r} cannot be loaded: {e.reason}") from e
        if engine.pack.name != name:
            raise self.fail(pack, f"script is for pack {name!r} but was given pack {engine.pack.name!r}")
        if engine.pack.language != language:
            raise self.fail(pack, f"pack {name!r} is for language {engine.pack.language!r}, not {language!r}")
        return engine

    def days(self, value: Any, where: Any) -> tuple[int, int | None]:
        ok = isinstance(value, list) and len(value) == 2 and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in value)
        if not ok or value[0] is None or (value[1] is not None and value[1] < value[0]):
            raise self.fail(where, "days must be [FIRST, LAST] days overdue (LAST may be null: no upper limit)")
        return value[0], value[1]

    def lines(self, raw: Any, language: str, engine: RuleEngine) -> dict[str, ScriptLine]:
        spec = self.mapping(raw, "lines", set(LINES), set(LINES))
        for key, value in spec.items():
            if not isinstance(value, str) or not value.strip():
                raise self.fail(key, f"line {key} must be non-empty text")
        return {str(key): self.line(str(key), value, language, engine) for key, value in spec.items()}

    def line(self, line_id: str, text: str, language: str, engine: RuleEngine) -> ScriptLine:
        states = LINES[line_id].states
        allowed = ACCOUNT_VALUES | LINES[line_id].call_values | (DEBT_VALUES if states == VERIFIED else set())
        placeholders = self.placeholders(text, line_id, allowed)
        for needed in sorted(LINES[line_id].call_values - placeholders):
            raise self.fail(text, f"line {line_id} must say {{{needed}}}")
        sample = text.format_map({k: format_value(k, SAMPLES[language][k], language) for k in placeholders})
        broken = first_violation(engine, sample, states, meaning=SemanticDetector.for_pack(engine.pack))
        if broken:
            state, rule = broken
            raise self.fail(text, f"line {line_id} breaks rule {rule} when said {state} "
                                  f"(checked as: {sample!r}); reword it")
        return ScriptLine(id=line_id, text=str(text), placeholders=placeholders, states=states,
                          line=getattr(text, "line", None))

    def placeholders(self, text: str, line_id: str, allowed: set[str] | frozenset[str]) -> frozenset[str]:
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
        except ValueError as e:
            reason = f"line {line_id}: bad placeholder syntax ({e}); write {{name}}, or {{{{ for a brace"
            raise self.fail(text, reason) from e
        for name, spec, conv in fields:
            if name not in PLACEHOLDERS or spec or conv:
                raise self.fail(text, f"line {line_id}: unknown placeholder {{{name}}}; allowed: "
                                      + ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS)))
            if name not in allowed:
                why = "discloses the debt: only in lines said after verification" if name in DEBT_VALUES else \
                      "has no value in this line"
                raise self.fail(text, f"line {line_id}: placeholder {{{name}}} {why}")
        return frozenset(name for name, _, _ in fields)


def _key(mapping: dict, key: str) -> Any:
    """The key object itself, which knows its line (values such as lists and numbers do not)."""
    return next((k for k in mapping if k == key), mapping)
