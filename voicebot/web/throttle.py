"""Sign-in throttling: failures counted per user and per address within a window, each attempt counted before its
password is checked so that concurrent attempts cannot pass the limit together. One node keeps the counts in memory;
nodes sharing a PostgreSQL store keep them in it, so spreading attempts over the nodes gains nothing."""

from __future__ import annotations

import collections
import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicebot.sql import Db

if TYPE_CHECKING:
    from voicebot.web.auth import AuthSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """A sign-in attempt the throttle has counted before its password is checked; `wait_s > 0`: refused, uncounted."""

    username: str
    ip: str
    at: float
    wait_s: float


class LoginThrottle:
    """Counts sign-in attempts per user and per address; too many failures within the window and sign-in waits.

    An attempt is counted before its password is checked, so concurrent attempts cannot pass the limit together.
    """

    def __init__(self, settings: AuthSettings, max_keys: int = 10_000) -> None:
        self._settings = settings
        self._max_keys = max_keys
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def reserve(self, username: str, ip: str) -> Attempt:
        """Count one attempt now, as a failure until `succeeded`; or refuse it, with the seconds to wait."""
        with self._lock:
            now = self._settings.now()
            wait_s = self._wait_s(username, ip, now)
            if wait_s == 0:
                self._count(username, ip, now)
        return Attempt(username=username, ip=ip, at=now, wait_s=wait_s)

    def _wait_s(self, username: str, ip: str, now: float) -> float:
        window, wait = self._settings.failure_window_s, 0.0
        for key, limit in limits(self._settings, username, ip):
            times = self._failures.get(key)
            if not times:
                continue
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                wait = max(wait, times[-limit] + window - now)
        return wait

    def _count(self, username: str, ip: str, now: float) -> None:
        for key, limit in limits(self._settings, username, ip):
            if key not in self._failures and len(self._failures) >= self._max_keys:
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(key, collections.deque(maxlen=limit)).append(now)

    def succeeded(self, attempt: Attempt) -> None:
        """Forget the user's failures and give the address back this attempt (it keeps its other failures)."""
        with self._lock:
            self._failures.pop(_user_key(attempt.username), None)
            with contextlib.suppress(KeyError, ValueError):
                self._failures[f"ip:{attempt.ip}"].remove(attempt.at)


def _user_key(username: str) -> str:
    return f"user:{username.strip().lower()}"


def limits(settings: AuthSettings, username: str, ip: str) -> list[tuple[str, int]]:
    """The keys an attempt counts against, each with its failure limit, in key order (the order locks are taken)."""
    return sorted([(_user_key(username), settings.max_failures_user), (f"ip:{ip}", settings.max_failures_ip)])


class SharedLoginThrottle:
    """The throttle of nodes sharing one store: failures are rows of `login_failures`; a reservation locks its keys
    (an advisory lock per key, in key order) for the transaction that counts and adds them."""

    def __init__(self, db: Db, settings: AuthSettings) -> None:
        self._db, self._settings = db, settings

    def reserve(self, username: str, ip: str) -> Attempt:
        """Count one attempt now, as a failure until `succeeded`; or refuse it, with the seconds to wait."""
        now, window, wait = self._settings.now(), self._settings.failure_window_s, 0.0
        keys = limits(self._settings, username, ip)
        with self._db.write():
            for key, _ in keys:
                self._db.rows("SELECT pg_advisory_xact_lock(hashtext(?))", [key])
            self._db.execute(f"DELETE FROM login_failures WHERE key IN ({', '.join('?' * len(keys))}) AND at <= ?",
                             [key for key, _ in keys] + [now - window])
            for key, limit in keys:
                times = [r["at"] for r in self._db.rows("SELECT at FROM login_failures WHERE key = ? ORDER BY at",
                                                        [key])]
                if len(times) >= limit:
                    wait = max(wait, times[-limit] + window - now)
            if wait == 0:
                self._db.insert("login_failures", [{"key": key, "at": now} for key, _ in keys])
        return Attempt(username=username, ip=ip, at=now, wait_s=wait)

    def succeeded(self, attempt: Attempt) -> None:
        """Forget the user's failures and give the address back this attempt (it keeps its other failures)."""
        with self._db.write():
            self._db.execute("DELETE FROM login_failures WHERE key = ?", [_user_key(attempt.username)])
            self._db.execute("DELETE FROM login_failures WHERE ctid IN (SELECT ctid FROM login_failures "
                             "WHERE key = ? AND at = ? LIMIT 1)", [f"ip:{attempt.ip}", attempt.at])
