"""What a campaign store keeps and gives back: accounts as stored, their next steps, claims on them, import reports,
and the stored form of times."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from compliance_rules.timing import Agreement, Attempt, Decision
from voicebot.campaigns.importer import RowProblem, Stage

State = Literal["pending", "retry", "callback", "done", "exhausted", "blocked"]
ACTIVE: tuple[State, ...] = ("pending", "retry", "callback")
_NAME = re.compile(r"[^\x00-\x1f|/]{1,64}")


class CampaignError(ValueError):
    """A campaign name that is malformed or names no campaign in the database."""


def stamp(at: datetime) -> str:
    """A stored time: UTC ISO-8601 to the second, so text order is time order."""
    if at.tzinfo is None:
        raise ValueError("campaign times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="seconds")


def unstamp(text: str | None) -> datetime | None:
    """A stored time back as an aware datetime."""
    return datetime.fromisoformat(text) if text else None


def check_campaign_name(name: str) -> str:
    """1-64 printable characters without | or /."""
    if not _NAME.fullmatch(name or ""):
        raise CampaignError(f"campaign name must be 1-64 printable characters without | or /, not {name!r}")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """An account of a campaign as stored, without its personal fields (those stay sealed until dialled)."""

    campaign: str
    account_id: str
    debt: str
    """`lender/account_id`: dial cadence and retries are counted per debt, across campaigns."""
    phone_hmac: str = field(repr=False)
    zones: tuple[str, ...]
    amount: Decimal
    days_overdue: int
    stage: Stage
    lender: str
    due_date: date | None
    agent_id: str | None
    language: str
    state: State
    next_due: datetime | None
    callback_at: datetime | None = None
    callback_evidence: str | None = None
    imported_at: datetime | None = None
    """When the account was (last) imported: its days overdue count from then."""

    def days_overdue_at(self, at: datetime) -> int:
        """Days overdue at `at`: as imported, plus the whole days since."""
        return self.days_overdue + (max(0, (at - self.imported_at).days) if self.imported_at else 0)

    def agreement(self, grace_s: float) -> Agreement | None:
        """The debtor's agreed callback as a timing Agreement, from the agreed time until `grace_s` after it."""
        if self.state != "callback" or self.callback_at is None or not self.callback_evidence:
            return None
        return Agreement(self.callback_at, self.callback_at + timedelta(seconds=grace_s), self.callback_evidence)


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: accounts added and updated, and rows refused as duplicates."""

    added: int
    updated: int
    problems: list[RowProblem]


@dataclass(frozen=True, slots=True)
class Claim:
    """What claiming a due account found: the dial it began (None when the gate refused), the debt's dial history,
    and the gate's decision (None when another dialler is dialling the debt or the account is no longer due)."""

    attempt_id: str | None
    history: list[tuple[Attempt, str]]
    decision: Decision | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What happens to an account after a dial: its new state, when it is next due, an agreed callback."""

    state: State
    next_due: datetime | None
    callback_at: datetime | None = None
    callback_evidence: str | None = None
