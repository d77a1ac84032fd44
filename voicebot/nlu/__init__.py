"""Understanding customers' replies: intents, and the date and amount a promise to pay names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

Intent = Literal["identity_confirmed", "promise_to_pay", "dispute", "wrong_person", "refusal", "hardship",
                 "callback", "already_paid", "complaint", "other"]
INTENTS: tuple[Intent, ...] = ("identity_confirmed", "promise_to_pay", "dispute", "wrong_person", "refusal",
                               "hardship", "callback", "already_paid", "complaint", "other")


@dataclass(frozen=True, slots=True)
class Slots:
    """What a reply names, normalised: a date (promise or callback) and an amount of money."""

    date: date | None = None
    amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Understanding:
    """One customer reply as the NLU understood it."""

    text: str
    intent: Intent
    confidence: float
    slots: Slots = Slots()
