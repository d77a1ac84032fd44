"""What every SQLite-backed store shares: one sqlite-utils connection behind one lock, closed once."""

from __future__ import annotations

import threading
from typing import Self

import sqlite_utils


class LockedStore:
    """A store whose sqlite-utils database `_db` is used under `_lock`; closable and a context manager."""

    _db: sqlite_utils.Database
    _lock: threading.Lock | threading.RLock

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
