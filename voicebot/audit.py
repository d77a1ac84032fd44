"""Tamper-evident, append-only audit log: an HMAC hash chain in SQLite with a signed head anchor."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self, TextIO

import sqlite_utils

from voicebot.store_base import LockedStore, connect_private, keep_private


class AuditKeyError(RuntimeError):
    """The audit key file is missing for an existing log, empty, or unreadable."""




class AuditTamperedError(RuntimeError):
    """The head anchor is missing or its mac is wrong, so nothing more may be appended."""


GENESIS_HASH = "0" * 64
KEY_BYTES = 32
BUSY_TIMEOUT_S = 10.0
COLUMNS = ("seq", "at", "kind", "call_id", "actor", "data", "prev_hash", "hash")
APPEND_ONLY_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
    for table, verb in (("audit", "UPDATE"), ("audit", "DELETE"), ("audit_head", "DELETE"))
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One stored audit event; `data` is the decoded JSON object."""

    seq: int
    at: str
    kind: str
    call_id: str | None
    actor: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """The outcome of walking the chain: ok, or the first problem found."""

    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None


class AuditLog(LockedStore):
    """An append-only audit log in one SQLite file, keyed by a secret beside it."""

    def __init__(self, db: sqlite_utils.Database, key: bytes, path: Path) -> None:
        self._db = db
        self._key = key
        self.path = path
        self.name = path.name
        """How messages name this log (never a password)."""
        self._lock = threading.Lock()
        self.fault: str | None = None
        """Why the last append failed, until one succeeds again (shown by /healthz)."""

    @classmethod
    def open(cls, path: Path, key_path: Path | None = None) -> Self:
        """Open or create the log at `path`; the key defaults to `<path>.key` and is created for a new log."""
        key_path = key_path or path.with_name(path.name + ".key")
        conn = connect_private(path, timeout_s=BUSY_TIMEOUT_S)
        try:
            db = sqlite_utils.Database(conn)
            db.enable_wal()
            keep_private(path)
            db.execute("PRAGMA synchronous = FULL")
            key = load_audit_key(key_path, create="audit_head" not in db.table_names(), db_path=path)
            log = cls(db, key, path)
            log._create_schema()
        except BaseException:
            conn.close()
            raise
        return log

    def append(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        call_id: str | None = None,
        actor: str | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Add one event and return it once it is committed to disk."""
        if not isinstance(data, dict):
            raise ValueError(f"audit data for kind {kind!r} must be a dict, not {type(data).__name__}")
        if not kind or not isinstance(kind, str):
            raise ValueError("audit kind must be a non-empty string such as 'flag' or 'call_end'")
        if at is not None and at.tzinfo is None:
            raise ValueError("audit time must be timezone-aware; pass datetime.now(UTC)")
        try:
            data_json = _canonical(data)
        except (TypeError, ValueError):
            raise ValueError(f"audit data for kind {kind!r} must be JSON-serialisable") from None
        stamp = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            row = self._commit(kind, data_json, stamp, call_id, actor)
        except Exception as e:
            self.fault = f"cannot append to the audit log {self.name}: {type(e).__name__}: {e}"[:300]
            raise
        self.fault = None
        return _record(row)

    def _commit(self, kind: str, data_json: str, stamp: str, call_id: str | None, actor: str | None) -> dict:
        """Insert the next record of the chain and move the signed head to it, in one transaction."""
        with self._lock, _immediate(self._db.conn):
            row = self._next_row(self._head(self._db), kind, data_json, stamp, call_id, actor)
            self._db.table("audit").insert(row)
            self._db.execute(
                "UPDATE audit_head SET seq = ?, hash = ?, mac = ? WHERE id = 1",
                [row["seq"], row["hash"], self._head_mac(row["seq"], row["hash"])],
            )
        return row

    def _next_row(self, head: dict[str, Any] | None, kind: str, data_json: str, stamp: str, call_id: str | None,
                  actor: str | None) -> dict[str, Any]:
        """The record after the (checked) head, with its hash."""
        if head is None or not self._head_ok(head):
            msg = f"the head anchor of {self.name} is missing or forged, or the key is wrong; verify and restore it"
            raise AuditTamperedError(msg)
        row = {"seq": head["seq"] + 1, "at": stamp, "kind": kind, "call_id": call_id, "actor": actor}
        row |= {"data": data_json, "prev_hash": head["hash"]}
        row["hash"] = self._hash(row)
        return row

    def records(self, since_seq: int = 0) -> Iterator[AuditRecord]:
        """Yield the records after `since_seq`, in order, from one consistent snapshot."""
        with self._snapshot() as db:
            for row in db.query("SELECT * FROM audit WHERE seq > ? ORDER BY seq", [since_seq]):
                yield _record(row)

    def export(self, out: TextIO, fmt: Literal["csv", "jsonl"]) -> int:
        """Write every record as CSV (with header) or JSON lines, data as its JSON text; return the count."""
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"unknown audit export format {fmt!r}; use 'csv' or 'jsonl'")
        count = 0
        with self._snapshot() as db:
            writer = csv.DictWriter(out, fieldnames=COLUMNS) if fmt == "csv" else None
            if writer:
                writer.writeheader()
            for row in db.query(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY seq"):
                if writer:
                    writer.writerow(row)
                else:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        return count

    def verify(self) -> VerifyReport:
        """Walk the chain in seq order and report the first altered, missing, reordered or truncated record."""
        with self._snapshot() as db:
            total = next(db.query("SELECT count(*) AS n FROM audit"))["n"]
            last_seq, last_hash = 0, GENESIS_HASH
            for row in db.query("SELECT * FROM audit ORDER BY seq"):
                seq = row["seq"]
                if seq != last_seq + 1:
                    return _bad(total, last_seq + 1, f"record {last_seq + 1} is missing (deleted)")
                if not hmac.compare_digest(str(row["hash"]), self._hash(row)):
                    return _bad(total, seq, f"record {seq} was altered")
                if row["prev_hash"] != last_hash:
                    return _bad(total, seq, f"record {seq} does not follow record {last_seq} (reordered or inserted)")
                last_seq, last_hash = seq, row["hash"]
            return self._check_head(self._head(db), total, last_seq, last_hash)

    def _check_head(self, head: dict[str, Any] | None, total: int, last_seq: int, last_hash: str) -> VerifyReport:
        if head is None:
            return _bad(total, None, "the head anchor is missing (records may have been deleted from the end)")
        if not self._head_ok(head):
            return _bad(total, None, "the head anchor was forged (its mac does not match)")
        if (head_seq := head["seq"]) > last_seq:
            problem = f"the log ends at record {last_seq} but its head says {head_seq} (records deleted from the end)"
            return _bad(total, last_seq + 1, problem)
        if head_seq < last_seq:
            return _bad(total, head_seq + 1, f"record {head_seq + 1} is past the head anchor (head rolled back)")
        if head["hash"] != last_hash:
            return _bad(total, last_seq, f"the head anchor does not match record {last_seq}")
        return VerifyReport(ok=True, records=total)

    def _create_schema(self) -> None:
        with self._lock, _immediate(self._db.conn):
            columns = {name: int if name == "seq" else str for name in COLUMNS}
            not_null = set(COLUMNS) - {"call_id", "actor"}
            self._db.table("audit").create(columns, pk="seq", not_null=not_null, if_not_exists=True)
            head_columns = {"id": int, "seq": int, "hash": str, "mac": str}
            self._db.table("audit_head").create(head_columns, pk="id", not_null=set(head_columns), if_not_exists=True)
            for statement in APPEND_ONLY_TRIGGERS:
                self._db.execute(statement)
            empty = next(self._db.query("SELECT NOT EXISTS (SELECT 1 FROM audit) AS empty"))["empty"]
            if empty and self._head(self._db) is None:
                genesis = {"id": 1, "seq": 0, "hash": GENESIS_HASH, "mac": self._head_mac(0, GENESIS_HASH)}
                self._db.table("audit_head").insert(genesis)

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite_utils.Database]:
        """A separate read-only connection holding one read transaction, so readers never block appends."""
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA query_only = ON")
            db = sqlite_utils.Database(conn)
            conn.execute("BEGIN")
            yield db
        finally:
            conn.close()

    def _hash(self, row: dict[str, Any]) -> str:
        fields = [row["seq"], row["at"], row["kind"], row["call_id"], row["actor"], row["data"]]
        message = f"{row['prev_hash']}\n{_canonical(fields)}"
        return hmac.new(self._key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def _head_mac(self, seq: int, hash_hex: str) -> str:
        return hmac.new(self._key, f"{seq}:{hash_hex}".encode(), hashlib.sha256).hexdigest()

    def _head_ok(self, head: dict[str, Any]) -> bool:
        return hmac.compare_digest(str(head["mac"]), self._head_mac(head["seq"], head["hash"]))

    @staticmethod
    def _head(db: sqlite_utils.Database) -> dict[str, Any] | None:
        return next(db.query("SELECT seq, hash, mac FROM audit_head WHERE id = 1"), None)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _record(row: dict[str, Any]) -> AuditRecord:
    return AuditRecord(**{**row, "data": json.loads(row["data"])})


def _bad(total: int, seq: int | None, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, records=total, first_bad_seq=seq, problem=problem)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that locks up front, so a second writer process waits instead of forking the chain."""
    conn.execute("BEGIN IMMEDIATE")
    with conn:
        yield


def load_audit_key(key_path: Path, *, create: bool, db_path: Path | str) -> bytes:
    """The log's HMAC key; created (0600, atomically) when `create` and missing."""
    if not key_path.exists():
        if not create:
            msg = f"audit key {key_path} is missing but the log {db_path} exists; restore the key from backup"
            raise AuditKeyError(msg)
        write_key_file(key_path, secrets.token_bytes(KEY_BYTES))
    try:
        key = key_path.read_bytes()
    except OSError as e:
        raise AuditKeyError(f"cannot read audit key {key_path} ({e.strerror}); check its owner and mode") from None
    if not key:
        raise AuditKeyError(f"audit key {key_path} is empty; restore it from backup")
    return key


def write_key_file(key_path: Path, key: bytes, *, replace: bool = False) -> None:
    """Write a key 0600, atomically; without `replace`, a process that loses a creation race keeps the winner's."""
    key_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = key_path.with_name(f".{key_path.name}.{secrets.token_hex(4)}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    if replace:
        os.replace(tmp, key_path)
    else:
        with suppress(FileExistsError):
            os.link(tmp, key_path)
        tmp.unlink()
    dir_fd = os.open(key_path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
