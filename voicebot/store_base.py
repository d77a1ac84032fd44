"""What every SQLite-backed store shares: a file only its owner may read, one sqlite-utils connection behind one
lock, closed once."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import sqlite_utils

PRIVATE_MODE = 0o600
BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another connection's lock before it fails."""
SIDE_FILES = ("-wal", "-shm", "-journal")
"""What SQLite writes beside a database; it holds the same rows, so it gets the same mode."""


def connect_private(path: Path, *, timeout_s: float) -> sqlite3.Connection:
    """A connection to the SQLite file at `path`, which is created 0600 if new and loses group and other access if not.

    Call `keep_private(path)` again once WAL is on, for the -wal and -shm files it adds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    keep_private(path)
    return sqlite3.connect(str(path), timeout=timeout_s, check_same_thread=False)


def keep_private(path: Path) -> None:
    """Take group and other access off a database we own and the side files beside it."""
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(file, stat.S_IMODE(info.st_mode) & 0o700)


def open_private_db(path: Path, *, timeout_s: float = BUSY_TIMEOUT_S, synchronous_full: bool = False
                    ) -> sqlite_utils.Database:
    """The SQLite file at `path` (0600) in WAL mode, fsynced on every commit with `synchronous_full`."""
    conn = connect_private(path, timeout_s=timeout_s)
    try:
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        if synchronous_full:
            db.execute("PRAGMA synchronous = FULL")
        keep_private(path)
        return db
    except BaseException:
        conn.close()
        raise


@contextlib.contextmanager
def immediate_transaction(db: sqlite_utils.Database, lock: threading.Lock | threading.RLock) -> Iterator[None]:
    """One write transaction under `lock`, begun at once (BEGIN IMMEDIATE) so it never fails halfway on a busy lock,
    committed at the end or rolled back on error."""
    with lock:
        db.conn.execute("BEGIN IMMEDIATE")
        with db.conn:
            yield


class LockedStore:
    """A store whose sqlite-utils database `_db` is used under `_lock`; closable and a context manager."""

    _db: sqlite_utils.Database
    _lock: threading.Lock | threading.RLock

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _write(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction, begun at once (BEGIN IMMEDIATE) so it never fails halfway on a busy lock."""
        return immediate_transaction(self._db, self._lock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
