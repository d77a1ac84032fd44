"""Personal data at rest: AES-256-GCM per field, a keyed HMAC of the phone for look-ups, the key in `<db>.pii.key`."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from voicebot.audit import write_key_file


class PiiKeyError(RuntimeError):
    """The PII key is missing, unreadable, malformed, or not the key this database's personal data was sealed with."""


KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"
CHECK_LABEL = b"voicebot pii key check v1"


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


class PiiCipher:
    """Seals and opens personal fields; each sealed value is bound to its row and column (AES-GCM associated data)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise PiiKeyError(f"a PII key is {KEY_BYTES} bytes, not {len(key)}; restore the right key file")
        self._aead = AESGCM(_derive(key, b"voicebot pii aes-256-gcm"))
        self._mac = _derive(key, b"voicebot pii lookup hmac-sha256")
        self.check = hmac.new(self._mac, CHECK_LABEL, hashlib.sha256).hexdigest()
        """A value stored beside the data: it tells a wrong key apart from a damaged field."""

    def seal(self, text: str, context: str) -> bytes:
        """Encrypt `text`; `context` (e.g. `phone|campaign|account`) must be given again to open it."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, text.encode("utf-8"), context.encode("utf-8"))

    def open(self, blob: bytes, context: str) -> str:
        """Decrypt a sealed value; PiiKeyError if it was sealed with another key, for another field, or altered."""
        if not blob or blob[:1] != VERSION or len(blob) < 1 + NONCE_BYTES + 16:
            raise PiiKeyError(f"a sealed {context.split('|')[0]} field is damaged; restore the database from backup")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], context.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise PiiKeyError(f"a sealed {context.split('|')[0]} field does not open with this key (wrong key "
                              "file, or the field was altered or moved); restore the right <db>.pii.key") from None

    def lookup(self, text: str) -> str:
        """A keyed HMAC-SHA256 (hex) of a value: equal inputs match without the value being stored."""
        return hmac.new(self._mac, text.encode("utf-8"), hashlib.sha256).hexdigest()


def default_key_path(db_path: Path) -> Path:
    """Where the PII key of a database lives: beside it, as `<db>.pii.key`."""
    return db_path.with_name(db_path.name + ".pii.key")


def load_pii_key(key_path: Path, *, create: bool, db_path: Path) -> bytes:
    """Read the key; create it (0600, atomically) when `create` and it does not exist yet."""
    if not key_path.exists():
        if not create:
            raise PiiKeyError(f"PII key {key_path} is missing but {db_path} holds encrypted personal data; "
                              "restore the key from backup (without it that data cannot be read)")
        write_key_file(key_path, secrets.token_bytes(KEY_BYTES))
    try:
        key = key_path.read_bytes()
    except OSError as e:
        raise PiiKeyError(f"cannot read PII key {key_path} ({e.strerror}); check its owner and mode") from None
    if len(key) != KEY_BYTES:
        raise PiiKeyError(f"PII key {key_path} is {len(key)} bytes, not {KEY_BYTES}; restore it from backup")
    return key
