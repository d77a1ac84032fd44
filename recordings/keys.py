"""The recordings' key ring: AES-256 master keys by id in one 0600 file; the newest seals, every one still opens."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from voicebot.audit import write_key_file

KEY_BYTES = 32
_LINE = re.compile(r"(?P<id>[0-9A-Za-z_-]{1,40}) (?P<key>[0-9a-f]{64})")


class RecordingKeyError(RuntimeError):
    """The key file is missing, unreadable or malformed, or lacks the key a recording was sealed with."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Master keys by id, oldest first; `current` seals new recordings."""

    path: Path
    keys: dict[str, bytes]

    @classmethod
    def load(cls, path: Path, *, create: bool = False) -> KeyRing:
        """Read the key file; create it with one fresh key when `create` and it does not exist yet."""
        if not path.exists():
            if not create:
                raise RecordingKeyError(f"recording key file {path} is missing; restore it from backup "
                                        "(recordings sealed with it cannot be opened without it)")
            _write_keys(path, {_new_id(): secrets.token_bytes(KEY_BYTES)}, replace=False)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise RecordingKeyError(f"cannot read recording key file {path} ({type(e).__name__}); "
                                    "check its owner and mode") from None
        keys = {}
        for number, line in enumerate(text.splitlines(), 1):
            match = _LINE.fullmatch(line.strip())
            if match is None:
                raise RecordingKeyError(f"{path}:{number}: not a key line ('<id> <64 hex digits>'); restore the file")
            keys[match["id"]] = bytes.fromhex(match["key"])
        if not keys:
            raise RecordingKeyError(f"recording key file {path} holds no key; restore it from backup")
        return cls(path, keys)

    @property
    def current_id(self) -> str:
        """The id of the key that seals new recordings."""
        return next(reversed(self.keys))

    def cipher(self, key_id: str) -> AESGCM:
        """The AES-GCM cipher of key `key_id`; RecordingKeyError when this ring lacks it."""
        try:
            return AESGCM(self.keys[key_id])
        except KeyError:
            raise RecordingKeyError(f"the recording was sealed with key {key_id!r}, which {self.path} lacks; "
                                    "use the key file it was made with") from None

    def rotate(self) -> KeyRing:
        """A ring with a new current key, saved over the file atomically; older keys are kept to open old files."""
        keys = {**self.keys, _new_id(): secrets.token_bytes(KEY_BYTES)}
        _write_keys(self.path, keys, replace=True)
        return KeyRing(self.path, keys)


def _new_id() -> str:
    return datetime.now(UTC).strftime("k%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)


def _write_keys(path: Path, keys: dict[str, bytes], *, replace: bool) -> None:
    write_key_file(path, "".join(f"{key_id} {key.hex()}\n" for key_id, key in keys.items()).encode(), replace=replace)
