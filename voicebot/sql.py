"""One SQL database for the stores: the embedded SQLite file (the default) or a PostgreSQL server several nodes share,
named by a path or a postgresql:// URL. Stores write SQLite's `?` placeholders and portable SQL; tables come from
sqlite-utils on SQLite and from the project's yoyo migrations on PostgreSQL."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import psycopg
import sqlite_utils
from psycopg.rows import dict_row
from yoyo import get_backend, read_migrations

from voicebot.store_base import immediate_transaction, open_private_db

Target = Path | str
"""Where a store lives: a SQLite file, or a postgresql:// URL."""
Schema = dict[str, tuple[dict[str, type], str | tuple[str, ...]]]
"""Tables as sqlite-utils makes them: name → (columns and their types, primary key)."""
MIGRATIONS = Path(__file__).with_name("migrations") / "postgresql"
MAX_URL = 1000
_QUOTED = re.compile(r"('(?:[^']|'')*')")
_MIGRATED: set[str] = set()
"""Databases this process has brought to the schema: a store opened per request does not migrate again."""
_MIGRATING = threading.Lock()


class SharedStoreError(RuntimeError):
    """The shared PostgreSQL store cannot be named or reached (the message never holds the URL's password)."""


def is_url(target: Target) -> bool:
    """Whether `target` is a URL (which must name a PostgreSQL server) rather than a SQLite file."""
    return isinstance(target, str) and "://" in target


def display_name(url: str) -> str:
    """The database as messages name it: host, port and database, never the user or password; SharedStoreError
    (without the URL, which may hold a password) when it is not a postgresql:// URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or parts.scheme not in ("postgresql", "postgres") or len(url) > MAX_URL:
        raise SharedStoreError("the shared store must be named by a postgresql://user@host:port/database URL")
    return f"{parts.hostname or 'localhost'}:{port or 5432}{parts.path}"


def migrate(url: str) -> None:
    """Bring the database at `url` to the project's schema, once per process (yoyo; safe when several nodes start
    at once)."""
    with _MIGRATING:
        if url in _MIGRATED:
            return
        backend = get_backend(url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "postgres://", "postgresql+psycopg://", 1))
        try:
            with backend.lock():
                backend.apply_migrations(backend.to_apply(read_migrations(str(MIGRATIONS))))
        finally:
            backend.connection.close()
        _MIGRATED.add(url)


def open_pg(url: str, what: str = "the shared store") -> psycopg.Connection:
    """An autocommit connection (rows as dicts) to the database at `url`, brought to the project's schema first;
    SharedStoreError naming `what` and the server, never the password, when either fails."""
    name = display_name(url)
    try:
        migrate(url)
        return psycopg.connect(url, autocommit=True, row_factory=dict_row)
    except psycopg.OperationalError as e:
        text = str(e).strip()
        reason = text.splitlines()[-1][:200] if text else type(e).__name__
        raise SharedStoreError(f"cannot open {what} at {name}: {reason}") from None


def pg_sql(sql: str) -> str:
    """SQLite's `?` placeholders, outside quoted strings, as psycopg's `%s`; every literal `%` doubled."""
    parts = _QUOTED.split(sql.replace("%", "%%"))
    return "".join(p if i % 2 else p.replace("?", "%s") for i, p in enumerate(parts))


class Db:
    """A connection used under one lock: rows as dicts, writes in `write()` transactions, portable inserts."""

    kind: str
    name: str
    _lock: threading.RLock

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of a query."""
        raise NotImplementedError

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per row of arguments."""
        raise NotImplementedError

    def write(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction, committed at the end or rolled back on error."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def first(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        found = self.rows(sql, args)
        return found[0] if found else None

    def insert(self, table: str, rows: dict[str, Any] | Sequence[dict[str, Any]], *, ignore: bool = False) -> None:
        """Insert rows (all with the first row's columns); `ignore` skips those whose key exists."""
        rows = [rows] if isinstance(rows, dict) else list(rows)
        if rows:
            columns = list(rows[0])
            self.executemany(f"INSERT INTO {_name(table)} ({', '.join(map(_name, columns))}) VALUES "
                             f"({', '.join('?' * len(columns))})" + (" ON CONFLICT DO NOTHING" if ignore else ""),
                             [[row[c] for c in columns] for row in rows])

    def update(self, table: str, key: dict[str, Any], values: dict[str, Any]) -> int:
        """Set `values` on the row with primary key `key`; how many rows changed."""
        sets = ", ".join(f"{_name(c)} = ?" for c in values)
        where = " AND ".join(f"{_name(c)} = ?" for c in key)
        return self.execute(f"UPDATE {_name(table)} SET {sets} WHERE {where}", [*values.values(), *key.values()])

    def upsert(self, table: str, row: dict[str, Any], pk: str | tuple[str, ...]) -> None:
        """Insert `row`, or set its columns on the row with the same primary key."""
        keys = (pk,) if isinstance(pk, str) else pk
        sets = ", ".join(f"{_name(c)} = excluded.{_name(c)}" for c in row if c not in keys) or None
        self.execute(f"INSERT INTO {_name(table)} ({', '.join(map(_name, row))}) VALUES ({', '.join('?' * len(row))})"
                     f" ON CONFLICT ({', '.join(map(_name, keys))}) "
                     + (f"DO UPDATE SET {sets}" if sets else "DO NOTHING"), list(row.values()))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"not a column or table name: {identifier!r}")
    return f'"{identifier}"'


class SqliteDb(Db):
    """A SQLite file (0600, WAL) through sqlite-utils."""

    kind = "sqlite"

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db, self.path, self.name = db, path, str(path)
        self._lock = threading.RLock()

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, list(args)))

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._lock:
            return self.db.execute(sql, list(args)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self.db.conn.executemany(sql, rows)

    def write(self) -> contextlib.AbstractContextManager[None]:
        """BEGIN IMMEDIATE, so a transaction never fails halfway on another connection's lock."""
        return immediate_transaction(self.db, self._lock)

    def create(self, schema: Schema, indexes: Sequence[tuple[str, list[str]]] = ()) -> None:
        """Make missing tables, columns (a store from before them) and indexes."""
        with self.write():
            for table, (columns, pk) in schema.items():
                self.db.table(table).create(columns, pk=pk, if_not_exists=True)
                for name in columns.keys() - self.db.table(table).columns_dict.keys():
                    self.db.table(table).add_column(name, columns[name])
            for table, columns in indexes:
                self.db.table(table).create_index(columns, if_not_exists=True)

    def close(self) -> None:
        with self._lock:
            self.db.close()


class PgDb(Db):
    """A PostgreSQL database shared by several nodes (autocommit outside `write()`)."""

    kind = "postgresql"

    def __init__(self, conn: psycopg.Connection, url: str) -> None:
        self.conn, self.url, self.name = conn, url, display_name(url)
        self._lock = threading.RLock()

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self.conn.execute(pg_sql(sql), list(args)).fetchall()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._lock:
            return self.conn.execute(pg_sql(sql), list(args)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock, self.conn.cursor() as cursor:
            cursor.executemany(pg_sql(sql), rows)

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._lock, self.conn.transaction():
            yield

    def create(self, schema: Schema, indexes: Sequence[tuple[str, list[str]]] = ()) -> None:
        """Nothing to make: the migrations hold these tables."""

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def open_db(target: Target, *, timeout_s: float = 10.0, synchronous_full: bool = False) -> SqliteDb | PgDb:
    """The database at `target`: a SQLite file (0600, WAL; fsynced per commit with `synchronous_full`) or a
    PostgreSQL URL, migrated to the project's schema."""
    if not is_url(target):
        return SqliteDb(open_private_db(Path(target), timeout_s=timeout_s, synchronous_full=synchronous_full),
                        Path(target))
    return PgDb(open_pg(str(target)), str(target))


class SqlStore:
    """A store over one `Db`; closable and a context manager."""

    _db: Db

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _write(self) -> contextlib.AbstractContextManager[None]:
        return self._db.write()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
