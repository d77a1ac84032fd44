"""The audit log in PostgreSQL, shared by several nodes: every node appends to one chain (each append locks the
head row, so two nodes never fork it), and it verifies and exports as the SQLite log does."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg.rows import dict_row

from voicebot.audit import GENESIS_HASH, AuditLog, load_audit_key
from voicebot.sql import display_name, open_pg, pg_sql


class PgQuery:
    """Read queries in one transaction, with SQLite's `?` placeholders, rows as dicts (what the log's readers use)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """The rows of `sql`."""
        yield from self.conn.cursor(row_factory=dict_row).execute(pg_sql(sql), list(params))


class PgAuditLog(AuditLog):
    """An append-only audit log in a PostgreSQL database, keyed by a secret every node holds the same copy of."""

    def __init__(self, conn: psycopg.Connection, key: bytes, url: str) -> None:
        self._conn, self._key, self.url = conn, key, url
        self.path = url  # the stores beside the log open it here, as they open a SQLite log's file
        self.name = display_name(url)
        self._lock = threading.Lock()
        self.fault: str | None = None

    @classmethod
    def open(cls, url: str, key_path: Path | None = None) -> Self:  # type: ignore[override]
        """Open the log at `url` (migrating its schema); the first node creates the key at `key_path`, the others
        need a copy of it."""
        if key_path is None:
            raise ValueError("a shared audit log needs its key file (the same on every node)")
        conn = open_pg(url, "the shared audit log")
        try:
            new = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM audit_head) AS new").fetchone()["new"]
            log = cls(conn, load_audit_key(key_path, create=new, db_path=display_name(url)), url)
            conn.execute("INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, 0, %s, %s) "
                         "ON CONFLICT (id) DO NOTHING", [GENESIS_HASH, log._head_mac(0, GENESIS_HASH)])
        except BaseException:
            conn.close()
            raise
        return log

    def derived_key(self, purpose: str) -> bytes:
        """A key for `purpose` that every node holding this log's key derives alike (HMAC-SHA256)."""
        return hmac.new(self._key, f"voicebot {purpose}".encode(), hashlib.sha256).digest()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def _commit(self, kind: str, data_json: str, stamp: str, call_id: str | None, actor: str | None) -> dict:
        """Lock the head row, insert the next record and move the head, in one transaction."""
        with self._lock, self._conn.transaction():
            head = self._conn.execute("SELECT seq, hash, mac FROM audit_head WHERE id = 1 FOR UPDATE").fetchone()
            row = self._next_row(head, kind, data_json, stamp, call_id, actor)
            self._conn.execute("INSERT INTO audit (seq, at, kind, call_id, actor, data, prev_hash, hash) "
                               "VALUES (%(seq)s, %(at)s, %(kind)s, %(call_id)s, %(actor)s, %(data)s, %(prev_hash)s, "
                               "%(hash)s)", row)
            self._conn.execute("UPDATE audit_head SET seq = %s, hash = %s, mac = %s WHERE id = 1",
                               [row["seq"], row["hash"], self._head_mac(row["seq"], row["hash"])])
        return row

    @contextmanager
    def _snapshot(self) -> Iterator[PgQuery]:  # type: ignore[override]
        """A separate connection holding one repeatable-read, read-only transaction."""
        with psycopg.connect(self.url) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield PgQuery(conn)

