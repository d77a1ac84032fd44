"""Campaign CSV files: every row validated, bad rows reported by line number, good rows kept.

Problems name the line and the field, never the value (a phone number or name must not reach a log or a
terminal scroll-back); a time zone or a day count may be echoed.
"""

from __future__ import annotations

import csv
import io
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from scripts_library.load import bundled_languages
from voicebot.call import call_language

Stage = Literal["early", "middle", "late"]
STAGES: tuple[Stage, ...] = ("early", "middle", "late")
REQUIRED = ("name", "phone", "tz", "amount", "days_overdue", "lender")
OPTIONAL = ("id_last4", "due_date", "account_id", "agent_id")
ALIASES = {"time_zone": "tz", "timezone": "tz"}
MAX_TEXT = 100
MAX_ZONES = 4
MAX_AMOUNT = Decimal("1e12")
_SEPARATORS = re.compile(r"[\s().\-/]")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_LAST4 = re.compile(r"\d{3}[\dX]")
_AMOUNT = re.compile(r"\d{1,3}(,\d{3})+(\.\d{1,2})?|\d+(\.\d{1,2})?")


class CampaignFileError(ValueError):
    """A campaign file that cannot be used at all: unreadable, not UTF-8 CSV, or missing a required column."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = Path(path), line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """What is wrong with one row (or, for a warning, what was assumed); never carries the value itself."""

    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DebtRow:
    """One valid account of a campaign file; personal fields are left out of its repr."""

    line: int
    name: str = field(repr=False)
    phone: str = field(repr=False)
    zones: tuple[str, ...]
    """IANA names as written; a name the zone database does not know is kept (the gate reads it as every zone)."""
    amount: Decimal
    days_overdue: int
    stage: Stage
    lender: str
    id_last4: str | None = field(default=None, repr=False)
    due_date: date | None = None
    account_id: str | None = None
    """The lender's account id; None: the store derives one from the phone, lender and due date."""
    agent_id: str | None = None
    language: str = ""
    """The language the bot speaks to this debtor (empty: the campaign pack's language)."""


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """The good rows of a file, the bad ones (each problem by line) and the warnings on good ones."""

    rows: list[DebtRow]
    problems: list[RowProblem]
    warnings: list[RowProblem]
    rows_read: int


def stage_for(days_overdue: int) -> Stage:
    """The collection stage: up to 30 days overdue early, 31–60 middle, 61 and more late (0 is early)."""
    if days_overdue < 0:
        raise ValueError("days overdue cannot be negative")
    return "early" if days_overdue <= 30 else "middle" if days_overdue <= 60 else "late"


def parse_phone(text: str) -> str:
    """An E.164 number: separators dropped and a 00 prefix read as +; ValueError without saying the number."""
    phone = _SEPARATORS.sub("", text.strip())
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not _E164.fullmatch(phone):
        raise ValueError("not an international number such as +8613800138000 (E.164: +, country code, 7-15 digits)")
    return phone


def parse_amount(text: str) -> Decimal:
    """A positive amount with at most two decimals (thousands commas allowed), as a Decimal."""
    text = text.strip().replace("_", "")
    if not _AMOUNT.fullmatch(text):
        raise ValueError("must be a positive number with at most two decimals, such as 1200.50")
    try:
        amount = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise ValueError("must be a positive number with at most two decimals, such as 1200.50") from None
    if not 0 < amount < MAX_AMOUNT:
        raise ValueError("must be greater than 0 and below 10^12")
    return amount.quantize(Decimal("0.01"))


def parse_days(text: str) -> int:
    """Days overdue: a whole number, zero or more."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise ValueError(f"must be a whole number of days, 0 or more, not {text[:12]!r}")
    return int(text)


def parse_zones(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(zones as written, those the zone database does not know); several zones may be split by , ; or |."""
    zones = tuple(z for z in re.split(r"[,;|\s]+", text.strip()) if z)
    if len(zones) > MAX_ZONES:
        raise ValueError(f"at most {MAX_ZONES} time zones per account")
    unknown = []
    for zone in zones:
        if len(zone) > 64:
            raise ValueError("a time zone name is at most 64 characters")
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            unknown.append(zone)
    return zones, tuple(unknown)


def parse_language(text: str) -> str:
    """The script language (en-US and zh-CN read as en and zh), one the bundled scripts speak; empty: the pack's."""
    try:
        language = call_language(text) or ""
    except ValueError:
        language = text
    if language and language not in bundled_languages():
        raise ValueError(f"must be one of {', '.join(bundled_languages())} (the bundled scripts' languages)")
    return language


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{what} is empty")
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise ValueError(f"{what} must be at most {MAX_TEXT} printable characters")
    return value


def _optional(value: str | None, pattern: re.Pattern[str], hint: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if not pattern.fullmatch(value.upper() if pattern is _LAST4 else value):
        raise ValueError(hint)
    return value.upper() if pattern is _LAST4 else value


def _due_date(value: str | None) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a date as YYYY-MM-DD") from None


FIELD_PARSERS = {
    "name": lambda v: _text(v, "the name"),
    "phone": parse_phone,
    "tz": parse_zones,
    "amount": parse_amount,
    "days_overdue": parse_days,
    "lender": lambda v: _text(v, "the lender"),
    "id_last4": lambda v: _optional(v, _LAST4, "must be the last 4 characters of the ID: 4 digits, or 3 and X"),
    "due_date": _due_date,
    "account_id": lambda v: _optional(v, _TOKEN, "must be 1-64 characters of A-Z a-z 0-9 . _ : -"),
    "agent_id": lambda v: _optional(v, _TOKEN, "must be 1-64 characters of A-Z a-z 0-9 . _ : -"),
    "language": parse_language,
}


def parse_row(line: int, raw: Mapping[str, str | None]) -> tuple[DebtRow | None, list[RowProblem], list[RowProblem]]:
    """Validate one row (keys already canonical): the row or None, its problems, its warnings. Never raises."""
    values: dict[str, object] = {}
    problems = []
    for name, parse in FIELD_PARSERS.items():
        try:
            values[name] = parse(raw.get(name) or "")
        except ValueError as e:
            problems.append(RowProblem(line, name, str(e)))
    if problems:
        return None, problems, []
    zones, unknown = values.pop("tz")  # type: ignore[misc]
    warnings = [RowProblem(line, "tz", f"unknown time zone {z!r}: calls must fit every zone of the pack")
                for z in unknown]
    if not zones:
        warnings.append(RowProblem(line, "tz", "no time zone: calls must fit every zone of the pack"))
    days = values["days_overdue"]
    row = DebtRow(line=line, zones=zones, stage=stage_for(days), **values)  # type: ignore[arg-type]
    return row, [], warnings


def canonical_header(header: Iterable[str], path: Path | str) -> list[str]:
    """Header names lower-cased and trimmed, aliases (time_zone) mapped; a missing required column is an error."""
    names = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise CampaignFileError(path, 1, f"column(s) given twice: {', '.join(dupes)}")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise CampaignFileError(path, 1, f"missing column(s) {', '.join(missing)}; a campaign file needs "
                                         f"{', '.join(REQUIRED)} (tz may be called time_zone)")
    return names


def parse_text(text: str, path: Path | str = "<campaign>") -> ParsedFile:
    """Validate every row of CSV text; good rows are kept, bad ones reported by the line they start on."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = canonical_header(next(reader), path)
    except StopIteration:
        raise CampaignFileError(path, None, "the file is empty; it needs a header line") from None
    except csv.Error as e:
        raise CampaignFileError(path, 1, f"not CSV ({e})") from None
    rows, problems, warnings, read, start = [], [], [], 0, reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error:
            problems.append(RowProblem(start, "row", "malformed CSV (an unclosed quote?)"))
            break
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        read += 1
        if len(cells) != len(header):
            problems.append(RowProblem(line, "row", f"{len(cells)} fields, the header has {len(header)}"))
            continue
        row, bad, warned = parse_row(line, dict(zip(header, cells, strict=True)))
        problems += bad
        warnings += warned
        if row is not None:
            rows.append(row)
    return ParsedFile(rows=rows, problems=problems, warnings=warnings, rows_read=read)


def read_campaign_file(path: Path) -> ParsedFile:
    """Read a UTF-8 (optionally BOM-prefixed) campaign CSV file and validate it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CampaignFileError(path, None, f"cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CampaignFileError(path, line, "not UTF-8 text; save the sheet as CSV UTF-8") from None
    return parse_text(text, path)
