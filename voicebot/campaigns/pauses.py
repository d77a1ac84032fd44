"""Pausing work: one account, a whole campaign, or everything run under a pack stops being dialled until resumed;
each pause and resume audited with who made it."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Literal, Self

import sqlite_utils

from voicebot.audit import AuditLog
from voicebot.campaigns.accounts import Account, stamp
from voicebot.store_base import LockedStore, open_private_db

Scope = Literal["account", "campaign", "pack"]
SCOPES: tuple[Scope, ...] = ("account", "campaign", "pack")


class Pauses(LockedStore):
    """The `pauses` table beside the campaign accounts (same SQLite file, WAL)."""

    def __init__(self, db: sqlite_utils.Database, audit: AuditLog) -> None:
        self._db, self.audit = db, audit
        self._lock = threading.RLock()
        with self._lock, self._db.conn:
            self._db.table("pauses").create({"scope": str, "name": str, "by": str, "at": str}, pk=("scope", "name"),
                                            if_not_exists=True)

    @classmethod
    def open(cls, path: Path, audit: AuditLog) -> Self:
        """Open (creating the table if needed) the pauses kept in the database at `path`."""
        return cls(open_private_db(path), audit)

    def pause(self, scope: Scope, name: str, *, by: str, at: datetime) -> None:
        """Stop dialling an account (`campaign/account_id`), a campaign or a pack until resumed."""
        with self._lock, self._db.conn:
            self._db.table("pauses").upsert({"scope": _scope(scope), "name": name, "by": by, "at": stamp(at)},
                                            pk=("scope", "name"))
        self.audit.append("pause", {"scope": scope, "name": name}, actor=by)

    def resume(self, scope: Scope, name: str, *, by: str) -> bool:
        """Dial it again; False when it was not paused."""
        with self._lock, self._db.conn:
            gone = self._db.execute("DELETE FROM pauses WHERE scope = ? AND name = ?", [_scope(scope), name]).rowcount
        if gone:
            self.audit.append("resume", {"scope": scope, "name": name}, actor=by)
        return bool(gone)

    def listed(self) -> list[dict[str, str]]:
        """Every pause with who made it and when, newest first."""
        with self._lock:
            return list(self._db.query("SELECT scope, name, by, at FROM pauses ORDER BY at DESC, scope, name"))

    def paused(self) -> set[tuple[str, str]]:
        """Every pause as (scope, name)."""
        with self._lock:
            return {(r["scope"], r["name"]) for r in self._db.query("SELECT scope, name FROM pauses")}


def is_paused(paused: set[tuple[str, str]], account: Account, pack: str) -> bool:
    """Whether an account may not be dialled now under `paused`."""
    return (("pack", pack) in paused or ("campaign", account.campaign) in paused
            or ("account", f"{account.campaign}/{account.account_id}") in paused)


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"pause scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return scope
