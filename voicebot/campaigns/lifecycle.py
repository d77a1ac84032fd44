"""A debt's life across campaigns and weeks: its state, a promise's date and amount, what was paid, and the history
of every change, each audited with its cause (a call's outcome, an import, a user).

A debt that is disputed (until a user resolves it), that asked not to be called (cease), that is not the debtor's
number, paid or closed is dialled by no campaign.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Self

from voicebot.audit import AuditLog
from voicebot.campaigns.accounts import stamp
from voicebot.campaigns.crypto import PiiCipher, PiiKeyError
from voicebot.sql import Db, SqlStore, Target, open_db

DebtState = Literal["new", "reminding", "promised", "promise_kept", "promise_broken", "disputed", "cease",
                    "wrong_number", "paid", "closed"]
DEBT_STATES: tuple[DebtState, ...] = ("new", "reminding", "promised", "promise_kept", "promise_broken", "disputed",
                                      "cease", "wrong_number", "paid", "closed")
STOPPED: dict[str, str] = {
    "disputed": "the debtor disputes the debt: collection is paused until a user resolves it",
    "cease": "the debtor asked not to be called again",
    "wrong_number": "the number is not the debtor's",
    "paid": "the debt is paid",
    "closed": "the debt is closed",
}
"""The states no campaign dials, and why."""
AFTER_CALL: dict[str, DebtState] = {"promise_to_pay": "promised", "dispute": "disputed", "already_paid": "disputed",
                                    "wrong_person": "wrong_number"}
"""A call's outcome that changes the debt's state; an already-paid claim pauses collection until it is checked."""
PROMISE_GRACE = timedelta(days=1)
"""A payment this long after the promised date still keeps the promise."""
TABLES: dict[str, tuple[dict[str, type], str]] = {
    "debts": ({"debt": str, "state": str, "promise_date": str, "promise_amount": str, "paid": str,
               "updated_at": str}, "debt"),
    "debt_history": ({"id": int, "debt": str, "at": str, "from_state": str, "to_state": str, "cause": str,
                      "detail": str, "note_sealed": bytes}, "id"),
}
"""A user's note on a change (how a dispute was settled) may name people: it is sealed with the PII key."""


class DebtStateError(ValueError):
    """A change the lifecycle does not allow (resolving a debt that is not disputed, an unknown state)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DebtStatus:
    """Where a debt stands."""

    debt: str
    state: DebtState = "new"
    promise_date: date | None = None
    promise_amount: Decimal | None = None
    paid: Decimal = Decimal("0.00")

    @property
    def stopped(self) -> str | None:
        """Why no campaign may dial it now, or None."""
        return STOPPED.get(self.state)


class DebtBook(SqlStore):
    """The `debts` and `debt_history` tables beside a campaign store's accounts (same database)."""

    def __init__(self, db: Db, audit: AuditLog, cipher: PiiCipher | None) -> None:
        self._db, self.audit, self.cipher = db, audit, cipher
        db.create(TABLES, [("debt_history", ["debt", "at"])])

    @classmethod
    def open(cls, target: Target, audit: AuditLog, cipher: PiiCipher | None = None) -> Self:
        """Open (creating the tables if needed) the debts kept in the campaign database at `target`; a user's note
        is written and read with the database's PII `cipher`."""
        return cls(open_db(target, synchronous_full=True), audit, cipher)

    def status(self, debt: str) -> DebtStatus:
        """Where a debt stands (`new` when nothing happened to it yet)."""
        row = self._db.first("SELECT * FROM debts WHERE debt = ?", [debt])
        return _status(row) if row else DebtStatus(debt=debt)

    def all_statuses(self) -> dict[str, DebtStatus]:
        """Every debt that has a state, by debt."""
        return {r["debt"]: _status(r) for r in self._db.rows("SELECT * FROM debts")}

    def last_changes(self) -> dict[str, datetime]:
        """When each debt's state last changed."""
        return {r["debt"]: datetime.fromisoformat(r["at"])
                for r in self._db.rows("SELECT debt, max(at) AS at FROM debt_history GROUP BY debt")}

    def changes_to(self, states: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every change into one of `states` (debt, time, state), oldest first."""
        return self._db.rows(f"SELECT debt, at, to_state FROM debt_history WHERE to_state IN "
                             f"({', '.join('?' * len(states))}) ORDER BY id", list(states))

    def history(self, debt: str) -> list[dict[str, Any]]:
        """Every change of a debt's state, oldest first, with its note (None without the PII key)."""
        rows = self._db.rows("SELECT at, from_state, to_state, cause, detail, note_sealed FROM debt_history "
                             "WHERE debt = ? ORDER BY id", [debt])
        return [{**{k: v for k, v in r.items() if k != "note_sealed"}, "detail": json.loads(r["detail"]),
                 "note": self.cipher.open(r["note_sealed"], f"debt_note|{debt}|{r['at']}")
                 if r["note_sealed"] and self.cipher else None} for r in rows]

    def change(self, debt: str, state: DebtState, *, cause: str, at: datetime, note: str | None = None,
               **detail: Any) -> DebtStatus:
        """Move a debt to `state` (fields in `detail` that the debt keeps are kept), recorded and audited with its
        cause: `call:<id>` (`dial:unanswered`), `import:<file>:<line>`, `user:<name>` or `lifecycle:…`."""
        if state not in DEBT_STATES:
            raise DebtStateError(f"unknown debt state {state!r}; one of {', '.join(DEBT_STATES)}")
        if note and self.cipher is None:
            raise PiiKeyError("a note on a debt is sealed: open the debt book with the PII key")
        stored = {k: _stored(v) for k, v in detail.items()}
        sealed = self.cipher.seal(note, f"debt_note|{debt}|{stamp(at)}") if note and self.cipher else None
        with self._write():
            before = self.status(debt)
            kept = {k: v for k, v in stored.items() if k in ("promise_date", "promise_amount", "paid")}
            self._db.upsert("debts", {"debt": debt, "state": state, "updated_at": stamp(at), **kept}, pk="debt")
            self._db.insert("debt_history", {"debt": debt, "at": stamp(at), "from_state": before.state,
                                                   "to_state": state, "cause": cause, "detail": json.dumps(stored),
                                                   "note_sealed": sealed})
        self.audit.append("debt_state", {"debt": debt, "from": before.state, "to": state, "cause": cause, **stored},
                          call_id=cause.removeprefix("call:") if cause.startswith("call:") else None,
                          actor=cause.removeprefix("user:") if cause.startswith("user:") else "lifecycle")
        return self.status(debt)

    def after_call(self, debt: str, *, answered: bool, kind: str | None, call_id: str | None, at: datetime,
                   ptp_date: date | None = None, ptp_amount: Decimal | None = None) -> DebtStatus:
        """Follow a dial's result: a promise, a dispute (or a claim to have paid), a wrong number change the state;
        the first dial of a new debt starts reminding; anything else leaves it as it is. (Cease requests come from
        the cease list.)"""
        before = self.status(debt)
        cause = f"call:{call_id}" if call_id else "dial:unanswered"
        target = AFTER_CALL.get(kind or "") if answered else None
        if target == "promised" and ptp_date is not None:
            return self.change(debt, "promised", cause=cause, at=at, kind=kind, promise_date=ptp_date,
                               promise_amount=ptp_amount)
        if target is not None and target != "promised":
            return self.change(debt, target, cause=cause, at=at, kind=kind)
        if before.state in ("new", "promise_broken", "promise_kept"):
            return self.change(debt, "reminding", cause=cause, at=at, kind=kind or "unanswered")
        return before

    def payment(self, debt: str, amount: Decimal, *, paid_at: datetime, balance: Decimal | None, cause: str
                ) -> DebtStatus:
        """Record a payment: the debt is paid once what was paid covers its balance; a promise is kept by a payment
        of its amount made by its date (a day's grace)."""
        before = self.status(debt)
        paid = before.paid + amount
        if balance is not None and paid >= balance:
            return self.change(debt, "paid", cause=cause, at=paid_at, amount=amount, paid=paid)
        if (before.state in ("promised", "promise_broken") and before.promise_date is not None
                and paid >= (before.promise_amount or Decimal(0))
                and paid_at.date() <= before.promise_date + PROMISE_GRACE):
            return self.change(debt, "promise_kept", cause=cause, at=paid_at, amount=amount, paid=paid)
        return self.change(debt, before.state, cause=cause, at=paid_at, amount=amount, paid=paid)

    def resolve(self, debt: str, *, user: str, note: str, at: datetime) -> DebtStatus:
        """A user settles a dispute: reminding resumes, the note kept sealed."""
        if self.status(debt).state != "disputed":
            raise DebtStateError(f"debt {debt} is not disputed; only a dispute is resolved")
        return self.change(debt, "reminding", cause=f"user:{user}", at=at, note=note)

    def break_overdue_promises(self, now: datetime) -> list[str]:
        """Mark broken every promise whose date (and a day's grace) has passed unpaid; the debts it marked."""
        cutoff = (now - PROMISE_GRACE).date().isoformat()
        due = [r["debt"] for r in self._db.rows(
            "SELECT debt FROM debts WHERE state = 'promised' AND promise_date < ?", [cutoff])]
        for debt in due:
            self.change(debt, "promise_broken", cause="lifecycle:promise_date_passed", at=now)
        return due

    def counts(self) -> dict[str, int]:
        """How many debts are in each state (those never dialled are not counted)."""
        return {r["state"]: r["n"] for r in self._db.rows("SELECT state, count(*) AS n FROM debts GROUP BY state")}


def _status(row: dict[str, Any]) -> DebtStatus:
    return DebtStatus(debt=row["debt"], state=row["state"],
                      promise_date=date.fromisoformat(row["promise_date"]) if row["promise_date"] else None,
                      promise_amount=Decimal(row["promise_amount"]) if row["promise_amount"] else None,
                      paid=Decimal(row["paid"] or "0.00"))


def _stored(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else str(value) if isinstance(value, Decimal) \
        else value

