"""Human tasks: what a call hands to people (hardship, a complaint, a dispute to review, a transfer, a promise broken
at the late stage), queued with a due time, assigned by rule (the account's agent) or by hand, done or reassigned
with a note; every change audited with who made it."""

from __future__ import annotations

import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

import sqlite_utils

from voicebot.audit import AuditLog
from voicebot.campaigns.store import stamp
from voicebot.store_base import LockedStore, open_private_db

TaskStatus = Literal["open", "done"]
DUE_AFTER: dict[str, timedelta] = {"complaint": timedelta(days=1), "transfer": timedelta(hours=2),
                                   "hardship": timedelta(days=2), "dispute_review": timedelta(days=5),
                                   "broken_promise": timedelta(days=1)}
"""How soon each kind of task is due after it is raised."""
MAX_NOTE_CHARS = 500
COLUMNS = {"task_id": str, "debt": str, "campaign": str, "account_id": str, "kind": str, "status": str,
           "assignee": str, "due_at": str, "created_at": str, "cause": str, "note": str, "done_at": str,
           "done_by": str}


class TaskError(ValueError):
    """A task change that cannot be made (unknown task, already done, a note too long)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One task as listed (ids and kinds only: never a debtor's personal data)."""

    task_id: str
    debt: str
    campaign: str
    account_id: str
    kind: str
    status: TaskStatus
    assignee: str | None
    due_at: str
    created_at: str
    cause: str
    note: str | None = None
    done_at: str | None = None
    done_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The task as JSON."""
        return asdict(self)


class TaskBook(LockedStore):
    """The `tasks` table beside the campaign accounts (same SQLite file, WAL)."""

    def __init__(self, db: sqlite_utils.Database, audit: AuditLog) -> None:
        self._db, self.audit = db, audit
        self._lock = threading.RLock()
        with self._lock, self._db.conn:
            self._db.table("tasks").create(COLUMNS, pk="task_id", if_not_exists=True)
            self._db.table("tasks").create_index(["status", "due_at"], if_not_exists=True)

    @classmethod
    def open(cls, path: Path, audit: AuditLog) -> Self:
        """Open (creating the table if needed) the tasks kept in the database at `path`."""
        return cls(open_private_db(path), audit)

    def raise_task(self, kind: str, *, debt: str, campaign: str, account_id: str, cause: str, at: datetime,
                   assignee: str | None = None) -> Task:
        """Queue a task, due by its kind's delay; one open task per debt and kind (a second is not raised)."""
        with self._lock, self._db.conn:
            open_one = next(self._db.query("SELECT * FROM tasks WHERE debt = ? AND kind = ? AND status = 'open'",
                                           [debt, kind]), None)
            if open_one is not None:
                return _task(open_one)
            row = {"task_id": uuid.uuid4().hex, "debt": debt, "campaign": campaign, "account_id": account_id,
                   "kind": kind, "status": "open", "assignee": assignee,
                   "due_at": stamp(at + DUE_AFTER.get(kind, timedelta(days=1))), "created_at": stamp(at),
                   "cause": cause}
            self._db.table("tasks").insert(row)
        self.audit.append("task", {"event": "raised", "task_id": row["task_id"], "kind": kind, "debt": debt,
                                   "assignee": assignee, "cause": cause}, actor="lifecycle")
        return self.get(row["task_id"])

    def get(self, task_id: str) -> Task:
        """One task; TaskError if there is none with this id."""
        with self._lock:
            row = next(self._db.query("SELECT * FROM tasks WHERE task_id = ?", [task_id]), None)
        if row is None:
            raise TaskError("no task with this id")
        return _task(row)

    def tasks(self, *, status: TaskStatus | None = "open", assignee: str | None = None,
              unassigned_too: bool = False) -> list[Task]:
        """Tasks by due time: all, or one user's (with the unassigned ones when asked)."""
        sql, args = "SELECT * FROM tasks WHERE 1 = 1", []
        if status is not None:
            sql, args = sql + " AND status = ?", [status]
        if assignee is not None:
            sql += " AND (assignee = ?" + (" OR assignee IS NULL)" if unassigned_too else ")")
            args.append(assignee)
        with self._lock:
            return [_task(r) for r in self._db.query(sql + " ORDER BY due_at, created_at", args)]

    def assign(self, task_id: str, assignee: str | None, *, by: str, at: datetime) -> Task:
        """Give an open task to a user (None: back to the queue)."""
        task = self._open(task_id)
        with self._lock, self._db.conn:
            self._db.table("tasks").update(task_id, {"assignee": assignee})
        self.audit.append("task", {"event": "assigned", "task_id": task_id, "kind": task.kind, "debt": task.debt,
                                   "assignee": assignee, "at": stamp(at)}, actor=by)
        return self.get(task_id)

    def done(self, task_id: str, *, by: str, note: str, at: datetime) -> Task:
        """Close an open task with a note (no personal data; at most 500 characters)."""
        if not note.strip() or len(note) > MAX_NOTE_CHARS:
            raise TaskError(f"closing a task needs a note of 1 to {MAX_NOTE_CHARS} characters")
        task = self._open(task_id)
        with self._lock, self._db.conn:
            self._db.table("tasks").update(task_id, {"status": "done", "note": note.strip(), "done_at": stamp(at),
                                                     "done_by": by})
        self.audit.append("task", {"event": "done", "task_id": task_id, "kind": task.kind, "debt": task.debt},
                          actor=by)
        return self.get(task_id)

    def _open(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.status != "open":
            raise TaskError("the task is already done")
        return task


def _task(row: dict[str, Any]) -> Task:
    return Task(**{k: row.get(k) for k in COLUMNS})

