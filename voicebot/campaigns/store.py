"""Campaigns in the project's database (SQLite, or PostgreSQL shared by several nodes): accounts (personal fields
sealed), dial attempts and call outcomes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

from compliance_rules.timing import Agreement, Attempt, Decision
from voicebot.campaigns.accounts import (
    ACTIVE,
    Account,
    CampaignError,
    Claim,
    ImportReport,
    Step,
    check_campaign_name,
    stamp,
    unstamp,
)
from voicebot.campaigns.crypto import PiiCipher, PiiKeyError, default_key_path, load_pii_key
from voicebot.campaigns.dialer import DebtorCall
from voicebot.campaigns.importer import DebtRow, RowProblem, stage_for
from voicebot.sql import Db, SqlStore, Target, is_url, open_db

BUSY_TIMEOUT_S = 10.0
STALE_DIAL = timedelta(minutes=20)
"""A dial still marked `dialling` this long after it began has lost its dialler (no call runs past 15 minutes)."""
SEALED = ("name", "phone", "id_last4")
SCHEMA: dict[str, tuple[dict[str, type], str | tuple[str, ...]]] = {
    "pii_meta": ({"id": int, "check_mac": str, "created_at": str}, "id"),
    "campaigns": ({"name": str, "created_at": str, "updated_at": str, "source": str}, "name"),
    "accounts": ({"campaign": str, "account_id": str, "debt": str, "name_sealed": bytes, "phone_sealed": bytes,
                  "phone_hmac": str, "id_last4_sealed": bytes, "zones": str, "amount": str, "days_overdue": int,
                  "stage": str, "lender": str, "due_date": str, "agent_id": str, "language": str, "state": str,
                  "next_due": str, "callback_at": str, "callback_evidence": str, "source_line": int, "imported_at": str,
                  "updated_at": str}, ("campaign", "account_id")),
    "attempts": ({"attempt_id": str, "campaign": str, "account_id": str, "debt": str, "started_at": str,
                  "ended_at": str, "status": str, "outcome": str, "conversation": int, "call_id": str,
                  "detail": str}, "attempt_id"),
    "outcomes": ({"attempt_id": str, "campaign": str, "account_id": str, "call_id": str, "at": str, "kind": str,
                  "ptp_date": str, "ptp_amount": str, "callback_at": str, "detail": str}, "attempt_id"),
}
INDEXES = (("accounts", ["state", "next_due"]), ("accounts", ["phone_hmac"]), ("attempts", ["debt", "started_at"]),
           ("attempts", ["campaign"]), ("outcomes", ["campaign"]))


class CampaignStore(SqlStore):
    """Campaign accounts, attempts and outcomes, personal fields sealed with the PII key (`<db>.pii.key` beside a
    SQLite file; a shared store's key is named, and every node holds a copy)."""

    def __init__(self, db: Db, target: Target, cipher: PiiCipher | None) -> None:
        self._db, self.target, self._cipher = db, target, cipher

    @classmethod
    def open(cls, target: Target, *, key_path: Path | None = None, pii: bool = True) -> Self:
        """Open or create the store; `pii=False` opens without the key (reports need no personal data)."""
        if pii and key_path is None and is_url(target):
            raise PiiKeyError("a shared campaign store needs its PII key file named (the same on every node)")
        db = open_db(target, timeout_s=BUSY_TIMEOUT_S, synchronous_full=True)
        try:
            store = cls(db, target, None)
            db.create(SCHEMA, INDEXES)
            if pii:
                store._cipher = store._unlock(key_path or default_key_path(Path(target)))
        except BaseException:
            db.close()
            raise
        return store

    def _unlock(self, key_path: Path) -> PiiCipher:
        meta = self._first("SELECT check_mac FROM pii_meta WHERE id = 1")
        cipher = PiiCipher(load_pii_key(key_path, create=meta is None, db_path=self._db.name))
        if meta is None:
            with self._write():
                self._db.insert("pii_meta", {"id": 1, "check_mac": cipher.check,
                                             "created_at": stamp(datetime.now(UTC))}, ignore=True)
            meta = self._first("SELECT check_mac FROM pii_meta WHERE id = 1") or {}
        if meta.get("check_mac") != cipher.check:
            raise PiiKeyError(f"PII key {key_path} is not the key the personal data in {self._db.name} was sealed "
                              "with; restore the right key file")
        return cipher

    @property
    def cipher(self) -> PiiCipher:
        """The cipher; PiiKeyError when the store was opened without its key."""
        if self._cipher is None:
            raise PiiKeyError(f"{self._db.name} was opened without its PII key; personal fields cannot be used")
        return self._cipher

    # --- import ------------------------------------------------------------------------------------

    def import_rows(self, campaign: str, rows: Sequence[DebtRow], *, source: str, now: datetime) -> ImportReport:
        """Add or update a campaign's accounts (history and state are kept on update); duplicates are refused."""
        check_campaign_name(campaign)
        at, added, updated, seen, problems = stamp(now), 0, 0, {}, []
        with self._write():
            self._db.insert("campaigns", {"name": campaign, "created_at": at, "updated_at": at, "source": source},
                            ignore=True)
            self._db.update("campaigns", {"name": campaign}, {"updated_at": at, "source": source})
            for row in rows:
                account_id = row.account_id or self.derived_id(row)
                if account_id in seen:
                    problems.append(RowProblem(row.line, "account_id", f"same account as line {seen[account_id]}"))
                    continue
                seen[account_id] = row.line
                record = self._account_record(campaign, account_id, row, at)
                key = {"campaign": campaign, "account_id": account_id}
                if self._db.update("accounts", key, record):
                    updated += 1
                else:
                    self._db.insert("accounts", {**record, "state": "pending", "next_due": at})
                    added += 1
        return ImportReport(added=added, updated=updated, problems=problems)

    def derived_id(self, row: DebtRow) -> str:
        """An account id for a row without one: keyed on phone, lender and due date, so a re-import matches it."""
        return "acct-" + self.cipher.lookup(f"{row.phone}|{row.lender}|{row.due_date or ''}")[:16]

    def _account_record(self, campaign: str, account_id: str, row: DebtRow, at: str) -> dict[str, Any]:
        sealed = {f"{name}_sealed": self.cipher.seal(value, f"{name}|{campaign}|{account_id}") if value else None
                  for name, value in (("name", row.name), ("phone", row.phone), ("id_last4", row.id_last4))}
        return {"campaign": campaign, "account_id": account_id, "debt": f"{row.lender}/{account_id}", **sealed,
                "phone_hmac": self.cipher.lookup(row.phone), "zones": ",".join(row.zones), "amount": str(row.amount),
                "days_overdue": row.days_overdue, "stage": row.stage, "lender": row.lender,
                "due_date": row.due_date.isoformat() if row.due_date else None, "agent_id": row.agent_id,
                "language": row.language, "source_line": row.line, "imported_at": at, "updated_at": at}

    # --- reading accounts ----------------------------------------------------------------------------

    def campaigns(self) -> list[str]:
        """Campaign names, oldest first."""
        return [r["name"] for r in self._rows("SELECT name FROM campaigns ORDER BY created_at, name")]

    def require(self, campaign: str) -> str:
        """The campaign's name if it exists; CampaignError naming the known ones otherwise."""
        if campaign not in self.campaigns():
            known = ", ".join(self.campaigns()) or "none yet"
            raise CampaignError(f"no campaign {campaign!r} in {self._db.name} (campaigns: {known}); "
                                "import one with `voicebot campaign import FILE.csv`")
        return campaign

    def due(self, now: datetime, campaign: str | None = None) -> list[Account]:
        """Active accounts due at `now`, earliest first."""
        sql = f"SELECT * FROM accounts WHERE state IN ({', '.join('?' * len(ACTIVE))}) AND next_due <= ?"
        args: list[Any] = [*ACTIVE, stamp(now)]
        if campaign is not None:
            sql, args = sql + " AND campaign = ?", [*args, campaign]
        return [_account(r) for r in self._rows(sql + " ORDER BY next_due, campaign, account_id", args)]

    def next_due(self, campaign: str | None = None) -> datetime | None:
        """When the next active account falls due; None when none is left."""
        sql = f"SELECT min(next_due) AS t FROM accounts WHERE state IN ({', '.join('?' * len(ACTIVE))})"
        args: list[Any] = list(ACTIVE)
        if campaign is not None:
            sql, args = sql + " AND campaign = ?", [*args, campaign]
        return unstamp(self._rows(sql, args)[0]["t"])

    def account(self, campaign: str, account_id: str) -> Account:
        """One account, by campaign and id."""
        row = self._first("SELECT * FROM accounts WHERE campaign = ? AND account_id = ?", [campaign, account_id])
        if row is None:
            raise CampaignError(f"no account {account_id!r} in campaign {campaign!r}")
        return _account(row)

    def find_by_phone(self, phone: str) -> list[tuple[str, str]]:
        """(campaign, account id) of every account with this phone number, found by its keyed hash."""
        rows = self._rows("SELECT campaign, account_id FROM accounts WHERE phone_hmac = ? ORDER BY campaign",
                              [self.cipher.lookup(phone)])
        return [(r["campaign"], r["account_id"]) for r in rows]

    def debtor_call(self, account: Account, *, attempt: int, agreement: Agreement | None,
                    at: datetime | None = None) -> DebtorCall:
        """What the dialer is told: the account with its personal fields opened, its days overdue and stage as of
        `at` (as imported without it)."""
        row = self._first("SELECT name_sealed, phone_sealed, id_last4_sealed FROM accounts "
                          "WHERE campaign = ? AND account_id = ?", [account.campaign, account.account_id])
        if row is None:
            raise CampaignError(f"account {account.account_id!r} is no longer in campaign {account.campaign!r}")
        opened = {name: self.cipher.open(row[f"{name}_sealed"], f"{name}|{account.campaign}|{account.account_id}")
                  if row[f"{name}_sealed"] is not None else None for name in SEALED}
        days = account.days_overdue_at(at) if at else account.days_overdue
        return DebtorCall(campaign=account.campaign, account_id=account.account_id, zones=account.zones,
                          amount=account.amount, days_overdue=days, stage=stage_for(days),
                          lender=account.lender, due_date=account.due_date, agent_id=account.agent_id,
                          language=account.language, attempt=attempt, agreement=agreement, **opened)

    # --- attempts ----------------------------------------------------------------------------------------

    def history(self, debt: str) -> list[tuple[Attempt, str]]:
        """The debt's dials (not gate refusals) in time order, each as a timing Attempt and its status."""
        rows = self._rows("SELECT started_at, conversation, status FROM attempts WHERE debt = ? "
                              "AND status != 'refused' ORDER BY started_at, rowid", [debt])
        return [(Attempt(at=unstamp(r["started_at"]), conversation=bool(r["conversation"])), r["status"])
                for r in rows]

    def dial_times(self) -> dict[str, list[Attempt]]:
        """Every debt's dials (not gate refusals), in time order, by debt."""
        times: dict[str, list[Attempt]] = {}
        for r in self._rows("SELECT debt, started_at, conversation FROM attempts WHERE status != 'refused' "
                            "ORDER BY started_at, rowid"):
            times.setdefault(r["debt"], []).append(Attempt(datetime.fromisoformat(r["started_at"]),
                                                           bool(r["conversation"])))
        return times

    def claim(self, account: Account, at: datetime, gate: Callable[[list[Attempt]], Decision]) -> Claim:
        """Take a due account for one dial in one write transaction, so diallers sharing the database never dial a
        debt twice at once nor past its cadence: nothing while another dial of the debt runs or once the account is
        no longer due; otherwise the gate judges the history read in the same transaction, and an allowed dial is
        recorded before it is placed (a crash mid-call still counts it)."""
        with self._write():
            self._close_stale(at)
            row = self._lock_account(account)
            due = row is not None and row["state"] in ACTIVE and (unstamp(row["next_due"]) or at) <= at
            if not due or self._first("SELECT 1 AS busy FROM attempts WHERE debt = ? AND status = 'dialling'",
                                      [account.debt]):
                return Claim(None, [], None)
            history = self.history(account.debt)
            decision = gate([a for a, _ in history])
            if not decision.allowed:
                return Claim(None, history, decision)
            attempt_id = uuid.uuid4().hex
            self._db.insert("attempts", {
                "attempt_id": attempt_id, "campaign": account.campaign, "account_id": account.account_id,
                "debt": account.debt, "started_at": stamp(at), "status": "dialling", "conversation": 0,
                "detail": "{}"})
        return Claim(attempt_id, history, decision)

    def _lock_account(self, account: Account) -> dict[str, Any] | None:
        """Inside a write transaction: the account's state and due time. SQLite's transaction already holds the
        database; on PostgreSQL the debt's account rows are locked, and when another dialler holds any of them
        (SKIP LOCKED) the account counts as taken."""
        key = [account.campaign, account.account_id]
        if self._db.kind == "sqlite":
            return self._first("SELECT state, next_due FROM accounts WHERE campaign = ? AND account_id = ?", key)
        locked = self._rows("SELECT campaign, account_id, state, next_due FROM accounts WHERE debt = ? "
                            "FOR UPDATE SKIP LOCKED", [account.debt])
        total = self._first("SELECT count(*) AS n FROM accounts WHERE debt = ?", [account.debt])
        mine = [r for r in locked if [r["campaign"], r["account_id"]] == key]
        return mine[0] if mine and total and len(locked) == total["n"] else None

    def unclaim(self, attempt_id: str) -> None:
        """Drop a claimed dial that was never placed (nothing was dialled or audited), freeing its account."""
        with self._write():
            self._db.execute("DELETE FROM attempts WHERE attempt_id = ? AND status = 'dialling'", [attempt_id])

    def record_refusal(self, account: Account, at: datetime, detail: dict[str, Any], step: Step) -> str:
        """Record a dial the gate refused, with its reasons and next allowed time, and reschedule the account."""
        attempt_id = uuid.uuid4().hex
        with self._write():
            self._db.insert("attempts", {
                "attempt_id": attempt_id, "campaign": account.campaign, "account_id": account.account_id,
                "debt": account.debt, "started_at": stamp(at), "ended_at": stamp(at), "status": "refused",
                "conversation": 0, "detail": _json(detail)})
            self._set_step(account, step, at)
        return attempt_id

    def finish_attempt(self, attempt_id: str, account: Account, *, ended: datetime, status: str, call_id: str | None,
                       outcome: dict[str, Any], conversation: bool, detail: dict[str, Any], step: Step) -> None:
        """Store a dial's result, the call's outcome when answered, and the account's next step, all at once."""
        kind = outcome.get("kind") if status == "answered" else None
        with self._write():
            self._db.update("attempts", {"attempt_id": attempt_id}, {
                "ended_at": stamp(ended), "status": status, "outcome": kind, "conversation": int(conversation),
                "call_id": call_id, "detail": _json(detail)})
            if status == "answered":
                self._db.insert("outcomes", {
                    "attempt_id": attempt_id, "campaign": account.campaign, "account_id": account.account_id,
                    "call_id": call_id, "at": stamp(ended), "kind": str(kind or "answered"),
                    "ptp_date": _text(outcome.get("ptp_date")), "ptp_amount": _text(outcome.get("ptp_amount")),
                    "callback_at": stamp(step.callback_at) if step.callback_at else None, "detail": _json(outcome)})
            self._set_step(account, step, ended)

    def accounts(self, campaign: str | None = None) -> list[Account]:
        """Every account (of one campaign), by campaign and id."""
        sql, args = "SELECT * FROM accounts", []
        if campaign is not None:
            sql, args = sql + " WHERE campaign = ?", [campaign]
        return [_account(r) for r in self._rows(sql + " ORDER BY campaign, account_id", args)]

    def set_steps(self, steps: Sequence[tuple[Account, Step]], at: datetime) -> None:
        """Set accounts' states and when they are next due (a collection plan), in one transaction."""
        with self._write():
            self._update_steps(steps, at)

    def release(self, debt: str, now: datetime) -> int:
        """Make a debt's blocked accounts due again (its dispute was resolved); how many."""
        with self._write():
            return self._db.execute("UPDATE accounts SET state = 'pending', next_due = ?, updated_at = ? "
                                    "WHERE debt = ? AND state = 'blocked'", [stamp(now), stamp(now), debt])

    def close_interrupted(self, now: datetime) -> int:
        """Mark dials whose dialler died (left `dialling` over STALE_DIAL) as failed; they still count for cadence,
        and another dialler may take their accounts over. Returns how many."""
        with self._write():
            return self._close_stale(now)

    def _close_stale(self, now: datetime) -> int:
        return self._db.execute("UPDATE attempts SET status = 'failed', ended_at = ?, detail = ? "
                                "WHERE status = 'dialling' AND started_at < ?",
                                [stamp(now), _json({"error": "interrupted"}), stamp(now - STALE_DIAL)])

    def _set_step(self, account: Account, step: Step, at: datetime) -> None:
        self._update_steps([(account, step)], at)

    def _update_steps(self, steps: Sequence[tuple[Account, Step]], at: datetime) -> None:
        """Inside a write transaction: set each account's state and next due time."""
        self._db.executemany(
            "UPDATE accounts SET state = ?, next_due = ?, callback_at = ?, callback_evidence = ?, updated_at = ? "
            "WHERE campaign = ? AND account_id = ?",
            [(*_step_values(step, at), account.campaign, account.account_id) for account, step in steps])

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query (for reports)."""
        return self._rows(sql, args)

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._db.rows(sql, args)

    def _first(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        return self._db.first(sql, args)


def _step_values(step: Step, at: datetime) -> tuple[str, str | None, str | None, str | None, str]:
    return (step.state, stamp(step.next_due) if step.next_due else None,
            stamp(step.callback_at) if step.callback_at else None, step.callback_evidence, stamp(at))


def pii_cipher(target: Target, key_path: Path | None = None) -> PiiCipher:
    """The PII cipher of the campaign database at `target`, its key checked as the store checks it (made if new)."""
    with CampaignStore.open(target, key_path=key_path) as store:
        return store.cipher


def _account(row: dict[str, Any]) -> Account:
    return Account(campaign=row["campaign"], account_id=row["account_id"], debt=row["debt"],
                   phone_hmac=row["phone_hmac"], zones=tuple(z for z in (row["zones"] or "").split(",") if z),
                   amount=Decimal(row["amount"]), days_overdue=row["days_overdue"], stage=row["stage"],
                   lender=row["lender"], due_date=date.fromisoformat(row["due_date"]) if row["due_date"] else None,
                   agent_id=row["agent_id"], language=row["language"] or "", state=row["state"],
                   next_due=unstamp(row["next_due"]),
                   callback_at=unstamp(row["callback_at"]), callback_evidence=row["callback_evidence"],
                   imported_at=unstamp(row["imported_at"]))


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
