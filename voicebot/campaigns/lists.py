"""Payment and cease-request files: every row validated like a campaign file (problems by line, never a value),
then applied to the debts' lifecycle, each change audited with the file and line it came from."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Literal

from voicebot.campaigns.importer import CampaignFileError, RowProblem, parse_amount
from voicebot.campaigns.lifecycle import DebtBook, DebtStatus
from voicebot.campaigns.store import CampaignStore

ListKind = Literal["payments", "cease"]
COLUMNS: dict[ListKind, tuple[str, ...]] = {"payments": ("lender", "account_id", "amount", "paid_on"),
                                            "cease": ("lender", "account_id")}
MAX_TEXT = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRow:
    """One valid row: the debt it names and, for a payment, what was paid and when."""

    line: int
    debt: str
    amount: Decimal | None = None
    paid_on: date | None = None


def parse_list(text: str, kind: ListKind, path: Path | str = "<list>") -> tuple[list[ListRow], list[RowProblem]]:
    """Validate a payments or cease file's CSV text: its good rows, and each bad row's problems by line."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS[kind] if c not in header]
    if missing:
        raise CampaignFileError(path, 1, f"missing column(s) {', '.join(missing)}; a {kind} file needs "
                                         f"{', '.join(COLUMNS[kind])}")
    reader.fieldnames = header
    rows, problems = [], []
    try:
        for raw in reader:
            line = reader.line_num
            row, bad = _row(line, {k: (v or "").strip() for k, v in raw.items() if k}, kind)
            problems += bad
            rows += [row] if row else []
    except csv.Error:
        problems.append(RowProblem(reader.line_num, "row", "malformed CSV (an unclosed quote?)"))
    return rows, problems


def _row(line: int, raw: dict[str, str], kind: ListKind) -> tuple[ListRow | None, list[RowProblem]]:
    problems = [RowProblem(line, name, f"must be 1-{MAX_TEXT} characters without control characters")
                for name in ("lender", "account_id")
                if not 0 < len(raw.get(name, "")) <= MAX_TEXT or not raw[name].isprintable() or "/" in raw[name]]
    amount = paid_on = None
    if kind == "payments":
        try:
            amount = parse_amount(raw.get("amount", ""))
        except ValueError as e:
            problems.append(RowProblem(line, "amount", str(e)))
        try:
            paid_on = date.fromisoformat(raw.get("paid_on", ""))
        except ValueError:
            problems.append(RowProblem(line, "paid_on", "must be a date such as 2026-11-20"))
    if problems:
        return None, problems
    return ListRow(line=line, debt=f"{raw['lender']}/{raw['account_id']}", amount=amount, paid_on=paid_on), []


def read_list_file(path: Path, kind: ListKind) -> tuple[list[ListRow], list[RowProblem]]:
    """Read a UTF-8 payments or cease CSV file and validate it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise CampaignFileError(path, None, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CampaignFileError(path, None, "not UTF-8 text; save the sheet as CSV UTF-8") from None
    return parse_list(text, kind, path)


def apply_payments(book: DebtBook, store: CampaignStore, rows: list[ListRow], *, source: str) -> list[DebtStatus]:
    """Record each payment against its debt (paid once the latest imported balance is covered, a promise kept by
    its amount by its date)."""
    done = []
    for row in rows:
        if row.amount is None or row.paid_on is None:
            raise ValueError(f"line {row.line} is not a payment")
        balance = store.query("SELECT amount FROM accounts WHERE debt = ? ORDER BY imported_at DESC LIMIT 1",
                              [row.debt])
        done.append(book.payment(row.debt, row.amount, paid_at=datetime.combine(row.paid_on, time(12), UTC),
                                 balance=Decimal(balance[0]["amount"]) if balance else None,
                                 cause=f"import:{source}:{row.line}"))
    return done


def apply_cease(book: DebtBook, rows: list[ListRow], *, source: str, now: datetime) -> list[DebtStatus]:
    """Mark each listed debt `cease`: no campaign dials it again."""
    return [book.change(row.debt, "cease", cause=f"import:{source}:{row.line}", at=now) for row in rows]
