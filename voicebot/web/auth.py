"""Console users and sessions, kept in the audit log's SQLite file: scrypt hashes, hashed tokens, login throttling."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from zoneinfo import available_timezones

from voicebot.sql import Db, SqliteDb, SqlStore, Target, open_db
from voicebot.web.throttle import LoginThrottle, SharedLoginThrottle


class AuthError(ValueError):
    """A user name, role or password is unusable, or names a user that does not (or already) exist."""


ROLES = ("supervisor", "qa", "admin", "collector")
ACTION_ROLES = frozenset({"supervisor", "admin"})
"""Roles that may warn, mute, unmute and hang up."""
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES, TOKEN_BYTES = 16, 32, 32
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
USERNAME_RULE = ("1-32 characters of a-z 0-9 . _ -, starting with a letter or digit (capitals become lower case); "
                 "a display name may be anything, Chinese included")
TOUCH_EVERY_S = 30.0
"""A session's last-seen time is written at most this often."""
BUSY_TIMEOUT_S = 10.0
USER_SETTINGS = ("display_name", "language", "zone")
LANGUAGES = ("", "en", "zh")
DISPLAY_NAME_CHARS = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """How the console signs people in; `secure_cookies=None` means Secure unless serving on a loopback host."""

    secure_cookies: bool | None = None
    idle_timeout_s: float = 30 * 60
    session_lifetime_s: float = 12 * 3600
    max_failures_user: int = 5
    max_failures_ip: int = 20
    failure_window_s: float = 15 * 60
    ws_check_s: float = 30.0
    """How often an open event stream re-checks its session."""
    now: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A console user as listed; the password hash never leaves the store."""

    username: str
    role: str
    disabled: bool
    created_at: float
    display_name: str = ""
    language: str = ""
    """"en" or "zh"; "" follows the browser."""
    zone: str = ""
    """The IANA zone every page and CSV shows times in; "" follows the browser (CSV: UTC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A valid signed-in session, with its user's current role."""

    token_hash: str
    username: str
    role: str
    csrf: str
    created_at: float
    expires_at: float


def hash_password(password: str) -> str:
    """An scrypt hash with a fresh 16-byte salt, as `scrypt$n$r$p$salt$hash` (base64)."""
    check_password_text(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash; constant-time, False for any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > MAX_PASSWORD_CHARS:
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def check_password_text(password: str) -> None:
    """Refuse a password too short or too long to use."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AuthError(f"a password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")


def check_username(username: str) -> str:
    """The user name in canonical (lower-case) form, or AuthError naming the allowed characters."""
    name = username.strip().lower()
    if not USERNAME.match(name):
        raise AuthError(f"user name {username!r}: {USERNAME_RULE}")
    return name


def check_role(role: str) -> str:
    """A known role, or AuthError listing them."""
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def check_setting(name: str, value: str) -> str:
    """A user setting as stored, or AuthError saying what is allowed."""
    value = value.strip()
    if name == "language" and value not in LANGUAGES:
        raise AuthError("language must be en, zh or empty (the browser's)")
    if name == "zone" and value and value not in available_timezones():
        raise AuthError(f"unknown time zone {value[:40]!r}; use an IANA name such as Asia/Shanghai")
    if name == "display_name" and (len(value) > DISPLAY_NAME_CHARS or not value.isprintable()):
        raise AuthError(f"a display name is at most {DISPLAY_NAME_CHARS} printable characters")
    if name not in USER_SETTINGS:
        raise AuthError(f"no user setting {name!r}")
    return value


def token_hash(token: str) -> str:
    """What the sessions table stores instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=HASH_BYTES)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(bytes(SALT_BYTES))}${_b64(bytes(HASH_BYTES))}"
"""Checked against for unknown users, so a wrong name costs as long as a wrong password."""


class UserStore(SqlStore):
    """The `users` and `sessions` tables (shared by every node on PostgreSQL); every method is blocking (run it off
    the event loop)."""

    def __init__(self, db: Db, now: Callable[[], float] = time.time) -> None:
        self._db = db
        self._now = now
        if isinstance(db, SqliteDb):  # PostgreSQL's tables come from the migrations
            self._create_schema(db)

    @classmethod
    def open(cls, target: Target, now: Callable[[], float] = time.time) -> Self:
        """Open (creating the tables if needed) the store in the SQLite file or PostgreSQL database at `target`."""
        return cls(open_db(target, timeout_s=BUSY_TIMEOUT_S), now)

    @staticmethod
    def _create_schema(sqlite: SqliteDb) -> None:
        with sqlite.write():
            sqlite.db.table("users").create(
                {"username": str, "role": str, "password_hash": str, "disabled": int, "created_at": float},
                pk="username", not_null={"role", "password_hash", "disabled", "created_at"}, if_not_exists=True)
            sqlite.db.table("sessions").create(
                {"token_hash": str, "username": str, "csrf": str, "created_at": float, "expires_at": float,
                 "last_seen_at": float},
                pk="token_hash", not_null={"username", "csrf", "created_at", "expires_at", "last_seen_at"},
                foreign_keys=[("username", "users", "username")], if_not_exists=True)
            sqlite.db.execute("CREATE INDEX IF NOT EXISTS sessions_username ON sessions(username)")
            users = sqlite.db.table("users")
            for column in USER_SETTINGS:  # added after the first release: a store made before gains them, empty
                if column not in users.columns_dict:
                    users.add_column(column, str, not_null_default="")

    def add_user(self, username: str, role: str, password: str, display_name: str = "") -> User:
        """Create a user; AuthError if the name is taken or anything is malformed."""
        name, role, password_hash = check_username(username), check_role(role), hash_password(password)
        row = {"username": name, "role": role, "password_hash": password_hash, "disabled": 0,
               "created_at": self._now(), "display_name": check_setting("display_name", display_name)}
        with self._write():
            if self._row(name) is not None:
                raise AuthError(f"user {name!r} already exists")
            self._db.insert("users", row)
        return _user(row)

    def set_password(self, username: str, password: str) -> None:
        """Replace a user's password and end their sessions."""
        password_hash = hash_password(password)
        self._update(username, {"password_hash": password_hash}, end_sessions=True)

    def set_role(self, username: str, role: str) -> User:
        """Change a user's role; it applies to their open sessions at once."""
        return self._update(username, {"role": check_role(role)}, end_sessions=False)

    def set_settings(self, username: str, **values: str) -> User:
        """Change a user's display name, language or zone (checked by `check_setting`)."""
        checked = {name: check_setting(name, value) for name, value in values.items()}
        return self._update(username, checked, end_sessions=False)

    def set_disabled(self, username: str, disabled: bool) -> User:
        """Disable (ending their sessions) or re-enable a user."""
        return self._update(username, {"disabled": int(disabled)}, end_sessions=disabled)

    def _update(self, username: str, values: dict[str, Any], *, end_sessions: bool) -> User:
        name = check_username(username)
        with self._write():
            if self._row(name) is None:
                raise AuthError(f"no user {name!r}; add it with `voicebot users add`")
            self._db.update("users", {"username": name}, values)
            if end_sessions:
                self._db.execute("DELETE FROM sessions WHERE username = ?", [name])
            return _user(self._row(name))

    def users(self) -> list[User]:
        """Every user, by name."""
        return [_user(r) for r in self._db.rows("SELECT * FROM users ORDER BY username")]

    def has_users(self) -> bool:
        """Whether any user exists (none: nobody can sign in until `voicebot users add`)."""
        return self._db.first("SELECT EXISTS (SELECT 1 FROM users) AS any_user")["any_user"] == 1

    def user(self, username: str) -> User | None:
        """One user, or None."""
        row = self._row(username.strip().lower())
        return None if row is None else _user(row)

    def _row(self, name: str) -> dict[str, Any] | None:
        return self._db.first("SELECT * FROM users WHERE username = ?", [name])

    def authenticate(self, username: str, password: str) -> tuple[User | None, str]:
        """(user, "ok") when the password is right and the user enabled, else (user or None, why not)."""
        name = username.strip().lower()
        row = self._row(name) if USERNAME.match(name) else None
        ok = verify_password(password, row["password_hash"] if row else _DUMMY_HASH)
        if row is None:
            return None, "unknown_user"
        if not ok:
            return _user(row), "bad_password"
        if row["disabled"]:
            return _user(row), "disabled"
        return _user(row), "ok"

    def create_session(self, username: str, lifetime_s: float) -> tuple[str, Session]:
        """A new session for an existing user: (the token for the cookie, the session)."""
        token, now = secrets.token_urlsafe(TOKEN_BYTES), self._now()
        row = {"token_hash": token_hash(token), "username": username, "csrf": secrets.token_urlsafe(TOKEN_BYTES),
               "created_at": now, "expires_at": now + lifetime_s, "last_seen_at": now}
        with self._write():
            self._db.execute("DELETE FROM sessions WHERE expires_at <= ?", [now])
            self._db.insert("sessions", row)
            role = self._row(username)["role"]
        return token, _session(row, role)

    def session(self, token: str, idle_timeout_s: float) -> Session | None:
        """The live session for a cookie token, touching its last-seen time; None if unknown, expired or idle."""
        return self.session_by_hash(token_hash(token), idle_timeout_s)

    def session_by_hash(self, key: str, idle_timeout_s: float) -> Session | None:
        """As `session`, by the stored hash of the token (open event streams re-check with it)."""
        now = self._now()
        with self._write():
            row = self._db.first(
                "SELECT s.*, u.role, u.disabled FROM sessions s JOIN users u USING (username) WHERE token_hash = ?",
                [key])
            if row is None:
                return None
            if row["disabled"] or now >= row["expires_at"] or now - row["last_seen_at"] > idle_timeout_s:
                self._db.execute("DELETE FROM sessions WHERE token_hash = ?", [key])
                return None
            if now - row["last_seen_at"] >= TOUCH_EVERY_S:
                self._db.execute("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?", [now, key])
        return _session(row, row["role"])

    def session_hashes(self, username: str) -> list[str]:
        """The stored token hashes of a user's open sessions."""
        return [r["token_hash"] for r in self._db.rows("SELECT token_hash FROM sessions WHERE username = ?",
                                                       [username])]

    def end_session(self, token_hash_hex: str) -> None:
        """Sign a session out."""
        with self._write():
            self._db.execute("DELETE FROM sessions WHERE token_hash = ?", [token_hash_hex])


def _user(row: dict[str, Any]) -> User:
    return User(username=row["username"], role=row["role"], disabled=bool(row["disabled"]),
                created_at=row["created_at"], **{k: row.get(k) or "" for k in USER_SETTINGS})


def _session(row: dict[str, Any], role: str) -> Session:
    return Session(token_hash=row["token_hash"], username=row["username"], role=role, csrf=row["csrf"],
                   created_at=row["created_at"], expires_at=row["expires_at"])


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthState:
    """The console's sign-in machinery for one app."""

    store: UserStore
    settings: AuthSettings
    throttle: LoginThrottle | SharedLoginThrottle
    secure_cookies: bool
