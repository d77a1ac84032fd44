"""Pausing work: one account, a whole campaign, or everything run under a pack stops being dialled until resumed;
each pause and resume audited with who made it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from voicebot.audit import AuditLog
from voicebot.campaigns.accounts import Account, stamp
from voicebot.sql import Db, SqlStore, Target, open_db

Scope = Literal["account", "campaign", "pack"]
SCOPES: tuple[Scope, ...] = ("account", "campaign", "pack")


class Pauses(SqlStore):
    """The `pauses` table beside the campaign accounts (same database)."""

    def __init__(self, db: Db, audit: AuditLog) -> None:
        self._db, self.audit = db, audit
        db.create({"pauses": ({"scope": str, "name": str, "by": str, "at": str}, ("scope", "name"))})

    @classmethod
    def open(cls, target: Target, audit: AuditLog) -> Self:
        """Open (creating the table if needed) the pauses kept in the database at `target`."""
        return cls(open_db(target), audit)

    def pause(self, scope: Scope, name: str, *, by: str, at: datetime) -> None:
        """Stop dialling an account (`campaign/account_id`), a campaign or a pack until resumed."""
        with self._write():
            self._db.upsert("pauses", {"scope": _scope(scope), "name": name, "by": by, "at": stamp(at)},
                            pk=("scope", "name"))
        self.audit.append("pause", {"scope": scope, "name": name}, actor=by)

    def resume(self, scope: Scope, name: str, *, by: str) -> bool:
        """Dial it again; False when it was not paused."""
        with self._write():
            gone = self._db.execute("DELETE FROM pauses WHERE scope = ? AND name = ?", [_scope(scope), name])
        if gone:
            self.audit.append("resume", {"scope": scope, "name": name}, actor=by)
        return bool(gone)

    def listed(self) -> list[dict[str, str]]:
        """Every pause with who made it and when, newest first."""
        return self._db.rows('SELECT scope, name, "by", at FROM pauses ORDER BY at DESC, scope, name')

    def paused(self) -> set[tuple[str, str]]:
        """Every pause as (scope, name)."""
        return {(r["scope"], r["name"]) for r in self._db.rows("SELECT scope, name FROM pauses")}


def is_paused(paused: set[tuple[str, str]], account: Account, pack: str) -> bool:
    """Whether an account may not be dialled now under `paused`."""
    return (("pack", pack) in paused or ("campaign", account.campaign) in paused
            or ("account", f"{account.campaign}/{account.account_id}") in paused)


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"pause scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return scope
