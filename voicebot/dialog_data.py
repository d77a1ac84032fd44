"""What a dialog is given and gives back: the account and the caller in, the lines to say and the outcome out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

OutcomeKind = Literal["promise_to_pay", "dispute", "wrong_person", "third_party_callback", "callback",
                      "hardship_plan", "transferred", "already_paid", "complaint", "refused", "no_understanding",
                      "max_length", "hung_up", "not_verified", "silence"]


class DialogError(RuntimeError):
    """A dialog used out of order (hear() before start(), start() twice): a bug in the caller."""


class AccountError(ValueError):
    """An account the dialog cannot call with this script; the message names the field, never its value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """The debt and the debtor, as the campaign knows them."""

    name: str
    id_last4: str
    amount: Decimal
    due_date: date
    lender: str
    days_overdue: int
    zones: tuple[str, ...] = ()
    """IANA zones of the debtor; unknown or conflicting ones make every zone count (pack fallback zones)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who is calling: the authorised agency and the bot's agent id."""

    company: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class BotLine:
    """A line for the bot to say; `end_call` hangs up after it, `transfer` hands the call to a human."""

    line_id: str
    text: str
    end_call: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How the call ended, with the promise or callback it captured."""

    kind: OutcomeKind
    promise_date: date | None = None
    promise_amount: Decimal | None = None
    callback_at: datetime | None = None
    transferred: bool = False
    notes: tuple[str, ...] = ()
