"""The recording store: sealed recordings in a folder, their metadata in the database (SQLite, or PostgreSQL shared
by several nodes with the folder), retention and key rotation."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

from cryptography.exceptions import InvalidTag

from recordings.call_recording import LEGS, CallRecording
from recordings.keys import KeyRing
from recordings.sealed import (
    Opened,
    RecordingTamperedError,
    SealedIndex,
    index_sealed,
    open_sealed,
    rewrap,
)
from voicebot.audit import AuditLog
from voicebot.sql import Db, SqlStore, Target, is_url, open_db

RETENTION_DAYS = 3 * 366
"""At least three years, as the regulators ask."""
BUSY_TIMEOUT_S = 10.0
Status = Literal["recording", "complete", "incomplete", "purged"]
SCHEMA: dict[str, type] = {
    "recording_id": str, "file": str, "source": str, "adapter": str, "agent_id": str, "account_id": str,
    "started_at": str, "month": str, "ended_at": str, "duration_s": float, "sample_rate": int, "legs": str,
    "outcome": str, "flags": str, "flag_count": int, "status": str, "key_id": str, "retain_until": str,
    "purged_at": str, "original_name": str, "agent_lines": bytes, "owner": str, "pack": str,
}


def process_token(pid: int) -> str | None:
    """`host:pid:start` naming a running process on this host (its start time tells a reused pid apart); None if
    the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    start = stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name in parentheses
    return f"{socket.gethostname()}:{pid}:{start}"


class RecordingNotFound(KeyError):
    """No recording with that id in the store."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    """One recording's metadata."""

    recording_id: str
    file: str
    source: str
    adapter: str | None
    agent_id: str | None
    account_id: str | None
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    sample_rate: int
    legs: tuple[str, ...]
    outcome: str | None
    flags: list[dict[str, Any]] = field(default_factory=list)
    status: Status
    key_id: str
    retain_until: datetime
    pack: str | None = None
    """The rule pack the live call was judged by; None: an imported recording, or one from an earlier release."""

    @property
    def month(self) -> str:
        """The UTC month the call started in, YYYY-MM: the unit of QA sampling."""
        return f"{self.started_at:%Y-%m}"


def stamp(at: datetime) -> str:
    """A stored time: UTC ISO-8601, so text order is time order."""
    if at.tzinfo is None:
        raise ValueError("recording times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="seconds")


class RecordingStore(SqlStore):
    """Sealed recordings under `folder`, keys in `<db>.recordings.keys` (a shared store's are named, and every node
    holds a copy), metadata in the `recordings` table."""

    def __init__(self, db: Db, target: Target, folder: Path, ring: KeyRing, retention_days: int) -> None:
        self._db, self.target = db, target
        self._lock = threading.RLock()
        """Held while the key ring changes."""
        self.folder = folder
        self.ring = ring
        self.retention = timedelta(days=retention_days)
        self.fault: str | None = None
        """The last failure to write a recording's audio, until a write succeeds again (shown by /healthz)."""

    @classmethod
    def open(cls, target: Target, folder: Path | None = None, *, key_path: Path | None = None,
             retention_days: int = RETENTION_DAYS) -> Self:
        """Open or create the store (files under `folder`, default `recordings/` beside a SQLite database); the
        key file is created with the recordings table. Recordings a crashed process left open become `incomplete`."""
        if retention_days < RETENTION_DAYS:
            raise ValueError(f"recordings must be kept at least three years ({RETENTION_DAYS} days), "
                             f"not {retention_days}")
        if is_url(target) and (folder is None or key_path is None):
            raise ValueError("a shared recording store needs its folder and key file named (the same on every node)")
        db = open_db(target, timeout_s=BUSY_TIMEOUT_S, synchronous_full=True)
        try:
            fresh = not db.first("SELECT 1 AS found FROM recordings LIMIT 1") if db.kind == "postgresql" else \
                "recordings" not in db.db.table_names()
            path = Path(target)
            ring = KeyRing.load(key_path or path.with_name(path.name + ".recordings.keys"), create=fresh)
            db.create({"recordings": (SCHEMA, "recording_id")},
                      [("recordings", ["month", "agent_id"]), ("recordings", ["status", "retain_until"])])
        except BaseException:
            db.close()
            raise
        store = cls(db, target, folder or path.parent / "recordings", ring, retention_days)
        store.recover()
        return store

    # --- writing ----------------------------------------------------------------------------------

    def register(self, recording_id: str, *, started_at: datetime, source: str = "live",
                 adapter: str | None = None, agent_id: str | None = None, account_id: str | None = None,
                 original_name: str | None = None, pack: str | None = None) -> None:
        """Add a recording's row, status `recording`, before its audio is written; `pack`: the rule pack the call
        was judged by (its language says how screening hears it)."""
        with self._write():
            self._db.insert("recordings", {
                "recording_id": recording_id, "file": _file_name(recording_id, started_at), "source": source,
                "adapter": adapter, "agent_id": agent_id, "account_id": account_id, "started_at": stamp(started_at),
                "month": f"{started_at.astimezone(UTC):%Y-%m}", "sample_rate": 0, "legs": json.dumps(LEGS),
                "flags": "[]", "flag_count": 0, "status": "recording", "key_id": self.ring.current_id,
                "retain_until": stamp(started_at + self.retention), "original_name": original_name,
                "owner": process_token(os.getpid()), "pack": pack})

    def writer(self, recording_id: str, started_at: datetime) -> CallRecording:
        """The writer of a recording's file (created with its first audio)."""
        return CallRecording(self, recording_id, self.folder / _file_name(recording_id, started_at))

    def finish(self, recording_id: str, *, ended_at: datetime, duration_s: float, sample_rate: int,
               complete: bool = True, outcome: str | None = None, flags: Sequence[dict[str, Any]] = (),
               agent_lines: Sequence[dict[str, Any]] | None = None) -> None:
        """Record how the call ended: its length, outcome, flags, and the bot's lines when the agent was the bot
        ({start_s, end_s, text}, sealed: they hold the debtor's details)."""
        lines = None if agent_lines is None else self.seal_text(
            "agent_lines", recording_id, json.dumps(list(agent_lines), ensure_ascii=False))
        with self._write():
            self._db.update("recordings", {"recording_id": recording_id}, {
                "ended_at": stamp(ended_at), "duration_s": round(duration_s, 2), "sample_rate": sample_rate,
                "status": "complete" if complete else "incomplete", "outcome": outcome,
                "flags": json.dumps(list(flags), ensure_ascii=False), "flag_count": len(flags),
                "agent_lines": lines})

    def recover(self) -> int:
        """Mark recordings left open by a process that is gone (a crash, kill -9) as incomplete, readable up to their
        last flushed piece; those a running process on this host still writes stay open. Returns how many."""
        with self._write():
            rows = self._db.rows("SELECT recording_id, owner FROM recordings WHERE status = 'recording'")
            orphans = [r["recording_id"] for r in rows if not _running(r["owner"])]
            for rid in orphans:
                self._db.execute("UPDATE recordings SET status = 'incomplete' WHERE recording_id = ? AND "
                                 "status = 'recording'", [rid])
            return len(orphans)

    # --- reading ------------------------------------------------------------------------------------

    def get(self, recording_id: str) -> Recording:
        """One recording's metadata; RecordingNotFound if there is none."""
        rows = self._rows("SELECT * FROM recordings WHERE recording_id = ?", [recording_id])
        if not rows:
            raise RecordingNotFound(recording_id)
        return _recording(rows[0])

    def recordings(self, *, month: str | None = None, agent_id: str | None = None,
                   status: Sequence[Status] = ("complete", "incomplete")) -> list[Recording]:
        """Recordings in start order, optionally of one month (YYYY-MM) and one agent."""
        sql, args = f"SELECT * FROM recordings WHERE status IN ({', '.join('?' * len(status))})", list(status)
        if month is not None:
            sql, args = sql + " AND month = ?", [*args, month]
        if agent_id is not None:
            sql, args = sql + " AND agent_id = ?", [*args, agent_id]
        return [_recording(r) for r in self._rows(sql + " ORDER BY started_at, recording_id", args)]

    def agent_lines(self, recording_id: str) -> list[dict[str, Any]] | None:
        """What the bot said on a bot call ({start_s, end_s, text}); None when the agent was a person."""
        rows = self._rows("SELECT agent_lines FROM recordings WHERE recording_id = ?", [recording_id])
        if not rows or rows[0]["agent_lines"] is None:
            return None
        return json.loads(self.open_text("agent_lines", recording_id, rows[0]["agent_lines"]))

    def open_audio(self, recording_id: str) -> Opened:
        """The decrypted audio; RecordingTamperedError or RecordingKeyError when it cannot be trusted."""
        return open_sealed(self._audio_path(recording_id), self.ring)

    def index_audio(self, recording_id: str) -> SealedIndex:
        """Where the audio's chunks lie, for reading a part of it with `read_frames(index, store.ring, ...)`."""
        return index_sealed(self._audio_path(recording_id))

    def _audio_path(self, recording_id: str) -> Path:
        recording = self.get(recording_id)
        if recording.status == "purged":
            raise RecordingNotFound(f"{recording_id} was purged at the end of its retention")
        return self.folder / recording.file

    def path(self, recording_id: str) -> Path:
        """Where the sealed file lies."""
        return self.folder / self.get(recording_id).file

    # --- keys and retention ----------------------------------------------------------------------------

    def rotate_key(self, audit: AuditLog, *, actor: str) -> tuple[str, int]:
        """Start sealing with a new key and rewrap every finished recording's data key with it."""
        with self._lock:
            self.ring = self.ring.rotate()
            done = 0
            for row in self._rows("SELECT recording_id, file FROM recordings WHERE status IN "
                                  "('complete', 'incomplete') AND key_id != ?", [self.ring.current_id]):
                key_id = rewrap(self.folder / row["file"], self.ring)
                with self._write():
                    self._db.update("recordings", {"recording_id": row["recording_id"]}, {"key_id": key_id})
                done += 1
        audit.append("recording_key_rotated", {"key_id": self.ring.current_id, "rewrapped": done}, actor=actor)
        return self.ring.current_id, done

    def purge(self, audit: AuditLog, *, now: datetime, actor: str) -> list[str]:
        """Delete recordings past their retention; each deletion is audited. Returns their ids."""
        purged = []
        for row in self._rows("SELECT * FROM recordings WHERE status IN ('complete', 'incomplete') "
                              "AND retain_until <= ? ORDER BY retain_until", [stamp(now)]):
            (self.folder / row["file"]).unlink(missing_ok=True)
            with self._write():
                self._db.update("recordings", {"recording_id": row["recording_id"]},
                                {"status": "purged", "purged_at": stamp(now)})
            audit.append("recording_purged", {"recording_id": row["recording_id"], "agent_id": row["agent_id"],
                                              "started_at": row["started_at"], "retain_until": row["retain_until"]},
                         call_id=row["recording_id"], actor=actor)
            purged.append(row["recording_id"])
        return purged

    def seal_text(self, purpose: str, recording_id: str, text: str) -> bytes:
        """Encrypt personal text about a recording (a transcript, a reviewer's note) with the current key."""
        nonce = secrets.token_bytes(12)
        key_id = self.ring.current_id
        sealed = self.ring.cipher(key_id).encrypt(nonce, text.encode(), f"{purpose}|{recording_id}".encode())
        return key_id.encode() + b":" + nonce + sealed

    def open_text(self, purpose: str, recording_id: str, blob: bytes) -> str:
        """Decrypt what seal_text sealed; RecordingTamperedError if it was altered or moved to another recording."""
        key_id, _, rest = blob.partition(b":")
        aad = f"{purpose}|{recording_id}".encode()
        try:
            plain = self.ring.cipher(key_id.decode()).decrypt(rest[:12], rest[12:], aad)
        except InvalidTag:
            raise RecordingTamperedError(f"the sealed {purpose} of recording {recording_id} fails its integrity "
                                         "check") from None
        return plain.decode()

    def create_table(self, name: str, columns: dict[str, type], *, pk: str | tuple[str, ...]) -> None:
        """Create a table of this database if it does not exist yet (screening and QA keep theirs here); one made by
        an earlier release gains the columns added since, empty."""
        self._db.create({name: (columns, pk)})

    def upsert(self, table: str, row: dict[str, Any], *, pk: str | tuple[str, ...]) -> None:
        """Insert or update one row."""
        with self._write():
            self._db.upsert(table, row, pk=pk)

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows in one transaction."""
        with self._write():
            self._db.insert(table, rows)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; the number of rows changed."""
        with self._write():
            return self._db.execute(sql, args)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query on the store's database (reports)."""
        return self._rows(sql, args)

    def _rows(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        return self._db.rows(sql, args)


def _file_name(recording_id: str, started_at: datetime) -> str:
    return f"{started_at.astimezone(UTC):%Y/%m}/{recording_id}.vrec"


def new_recording_id() -> str:
    """An id for a recording that is not a live call (an import)."""
    return "rec-" + uuid.uuid4().hex


def _running(owner: str | None) -> bool:
    """Whether the process an `owner` token names still runs on this host (a token from another host counts as
    running: only its own host can tell)."""
    if not owner:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return True
    return process_token(int(pid)) == owner


def _recording(row: dict[str, Any]) -> Recording:
    return Recording(recording_id=row["recording_id"], file=row["file"], source=row["source"], adapter=row["adapter"],
                     agent_id=row["agent_id"], account_id=row["account_id"],
                     started_at=datetime.fromisoformat(row["started_at"]),
                     ended_at=datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
                     duration_s=row["duration_s"], sample_rate=row["sample_rate"], legs=tuple(json.loads(row["legs"])),
                     outcome=row["outcome"], flags=json.loads(row["flags"] or "[]"), status=row["status"],
                     key_id=row["key_id"], retain_until=datetime.fromisoformat(row["retain_until"]),
                     pack=row.get("pack"))
