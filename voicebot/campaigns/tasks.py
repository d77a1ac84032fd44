"""Human tasks: what a call hands to people (hardship, a complaint, a dispute to review, a transfer, a promise broken
at the late stage), queued with a due time, assigned by rule (the account's agent) or by hand, done or reassigned
with a note; every change audited with who made it."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Self

from voicebot.audit import AuditLog
from voicebot.campaigns.accounts import stamp
from voicebot.campaigns.crypto import PiiCipher, PiiKeyError
from voicebot.sql import Db, SqlStore, Target, open_db

TaskStatus = Literal["open", "done"]
DUE_AFTER: dict[str, timedelta] = {"complaint": timedelta(days=1), "transfer": timedelta(hours=2),
                                   "hardship": timedelta(days=2), "dispute_review": timedelta(days=5),
                                   "broken_promise": timedelta(days=1)}
"""How soon each kind of task is due after it is raised."""
MAX_NOTE_CHARS = 500
COLUMNS = {"task_id": str, "debt": str, "campaign": str, "account_id": str, "kind": str, "status": str,
           "assignee": str, "due_at": str, "created_at": str, "cause": str, "note_sealed": bytes, "done_at": str,
           "done_by": str}
"""A closing note may name people and circumstances: it is sealed with the campaign database's PII key."""


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
    done_at: str | None = None
    done_by: str | None = None
    note: str | None = None
    """The closing note, opened (None when the book was opened without the PII key)."""

    def as_dict(self) -> dict[str, Any]:
        """The task as JSON."""
        return asdict(self)


class TaskBook(SqlStore):
    """The `tasks` table beside the campaign accounts (same database)."""

    def __init__(self, db: Db, audit: AuditLog, cipher: PiiCipher | None) -> None:
        self._db, self.audit, self.cipher = db, audit, cipher
        db.create({"tasks": (COLUMNS, "task_id")}, [("tasks", ["status", "due_at"])])

    @classmethod
    def open(cls, target: Target, audit: AuditLog, cipher: PiiCipher | None = None) -> Self:
        """Open (creating the table if needed) the tasks kept in the database at `target`; closing a task or
        reading its note needs the database's PII `cipher`."""
        return cls(open_db(target), audit, cipher)

    def raise_task(self, kind: str, *, debt: str, campaign: str, account_id: str, cause: str, at: datetime,
                   assignee: str | None = None) -> Task:
        """Queue a task, due by its kind's delay; one open task per debt and kind (a second is not raised)."""
        with self._write():
            open_one = self._db.first("SELECT * FROM tasks WHERE debt = ? AND kind = ? AND status = 'open'",
                                      [debt, kind])
            if open_one is not None:
                return self._task(open_one)
            row = {"task_id": uuid.uuid4().hex, "debt": debt, "campaign": campaign, "account_id": account_id,
                   "kind": kind, "status": "open", "assignee": assignee,
                   "due_at": stamp(at + DUE_AFTER.get(kind, timedelta(days=1))), "created_at": stamp(at),
                   "cause": cause}
            self._db.insert("tasks", row)
        self.audit.append("task", {"event": "raised", "task_id": row["task_id"], "kind": kind, "debt": debt,
                                   "assignee": assignee, "cause": cause}, actor="lifecycle")
        return self.get(row["task_id"])

    def get(self, task_id: str) -> Task:
        """One task; TaskError if there is none with this id."""
        row = self._db.first("SELECT * FROM tasks WHERE task_id = ?", [task_id])
        if row is None:
            raise TaskError("no task with this id")
        return self._task(row)

    def tasks(self, *, status: TaskStatus | None = "open", assignee: str | None = None,
              unassigned_too: bool = False) -> list[Task]:
        """Tasks by due time: all, or one user's (with the unassigned ones when asked)."""
        sql, args = "SELECT * FROM tasks WHERE 1 = 1", []
        if status is not None:
            sql, args = sql + " AND status = ?", [status]
        if assignee is not None:
            sql += " AND (assignee = ?" + (" OR assignee IS NULL)" if unassigned_too else ")")
            args.append(assignee)
        return [self._task(r) for r in self._db.rows(sql + " ORDER BY due_at, created_at", args)]

    def assign(self, task_id: str, assignee: str | None, *, by: str, at: datetime) -> Task:
        """Give an open task to a user (None: back to the queue)."""
        task = self._open(task_id)
        with self._write():
            self._db.update("tasks", {"task_id": task_id}, {"assignee": assignee})
        self.audit.append("task", {"event": "assigned", "task_id": task_id, "kind": task.kind, "debt": task.debt,
                                   "assignee": assignee, "at": stamp(at)}, actor=by)
        return self.get(task_id)

    def done(self, task_id: str, *, by: str, note: str, at: datetime) -> Task:
        """Close an open task with a note (sealed; at most 500 characters)."""
        if not note.strip() or len(note) > MAX_NOTE_CHARS:
            raise TaskError(f"closing a task needs a note of 1 to {MAX_NOTE_CHARS} characters")
        if self.cipher is None:
            raise PiiKeyError("closing a task seals its note: open the task book with the PII key")
        task = self._open(task_id)
        sealed = self.cipher.seal(note.strip(), f"task_note|{task_id}")
        with self._write():
            self._db.update("tasks", {"task_id": task_id}, {"status": "done", "note_sealed": sealed,
                                                            "done_at": stamp(at), "done_by": by})
        self.audit.append("task", {"event": "done", "task_id": task_id, "kind": task.kind, "debt": task.debt},
                          actor=by)
        return self.get(task_id)

    def _open(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.status != "open":
            raise TaskError("the task is already done")
        return task

    def _task(self, row: dict[str, Any]) -> Task:
        sealed = row.get("note_sealed")
        note = self.cipher.open(sealed, f"task_note|{row['task_id']}") if sealed and self.cipher else None
        return Task(**{k: row.get(k) for k in COLUMNS if k != "note_sealed"}, note=note)
