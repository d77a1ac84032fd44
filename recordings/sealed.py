"""The sealed recording file: a header, then AES-256-GCM chunks of interleaved PCM16, each flushed as written.

Layout: MAGIC, a 4-byte header length, the JSON header (rate, channels, legs, key id, the file's data key
wrapped by that master key), then chunks: 4-byte length, 1 flag byte (1 = the last chunk), ciphertext + tag.
Every chunk is bound to the file id, its index and its flag, so a changed, dropped, reordered or appended
chunk fails to open. A file without its last chunk (the writer died) opens up to its last whole chunk.
Rotating the master key rewraps only the data key in the header.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recordings.keys import KeyRing, RecordingKeyError

MAGIC = b"VBREC1\n"
SYNC_EVERY_S = 1.0
"""Written pieces are flushed at once (a killed process loses nothing written) and fsynced this often."""
_syncer = ThreadPoolExecutor(1, thread_name_prefix="recording-fsync")
MAX_HEADER = 4096
MAX_CHUNK = 1 << 24
LAST = 1
TAG = 16
"""Bytes of the GCM tag at the end of each sealed chunk."""


class RecordingTamperedError(RuntimeError):
    """The file is not a sealed recording, or a part of it fails its integrity check."""


@dataclass(frozen=True, slots=True)
class Header:
    """What a sealed recording says about itself."""

    file_id: str
    call_id: str
    sample_rate: int
    legs: tuple[str, ...]
    key_id: str
    wrapped_key: bytes

    def to_bytes(self) -> bytes:
        body = json.dumps({"file_id": self.file_id, "call_id": self.call_id, "sample_rate": self.sample_rate,
                           "legs": list(self.legs), "key_id": self.key_id,
                           "wrapped_key": base64.b64encode(self.wrapped_key).decode()}).encode()
        return MAGIC + struct.pack(">I", len(body)) + body

    def data_key(self, ring: KeyRing) -> bytes:
        """The file's data key, unwrapped by the master key it names."""
        try:
            return ring.cipher(self.key_id).decrypt(self.wrapped_key[:12], self.wrapped_key[12:], self._aad())
        except InvalidTag:
            raise RecordingKeyError(f"key {self.key_id!r} in {ring.path} does not open recording {self.call_id}: "
                                    "the key file is not the one it was sealed with") from None

    def wrap(self, data_key: bytes, ring: KeyRing) -> Header:
        """This header with `data_key` wrapped by the ring's current key."""
        key_id, nonce = ring.current_id, secrets.token_bytes(12)
        wrapped = nonce + ring.cipher(key_id).encrypt(nonce, data_key, _header_aad(self.file_id, self.call_id))
        return Header(self.file_id, self.call_id, self.sample_rate, self.legs, key_id, wrapped)

    def _aad(self) -> bytes:
        return _header_aad(self.file_id, self.call_id)


def _header_aad(file_id: str, call_id: str) -> bytes:
    return f"vbrec|{file_id}|{call_id}".encode()


def _chunk_aad(file_id: str, index: int, flags: int) -> bytes:
    return f"vbrec|{file_id}|".encode() + struct.pack(">QB", index, flags)


class SealedWriter:
    """Appends interleaved PCM16 frames to a new sealed file; every `chunk` call is one flushed chunk, and the file
    is fsynced in the background at least every SYNC_EVERY_S, so the caller (the event loop) never waits on disk."""

    def __init__(self, path: Path, ring: KeyRing, *, call_id: str, sample_rate: int, legs: tuple[str, ...]) -> None:
        self.path = path
        data_key = AESGCM.generate_key(256)
        blank = Header(secrets.token_hex(16), call_id, sample_rate, legs, "", b"")
        self.header = blank.wrap(data_key, ring)
        self._aead = AESGCM(data_key)
        self._index = 0
        self._closed = False
        self._synced = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "xb")  # noqa: SIM115 -- held open for the call's length
        self._file.write(self.header.to_bytes())
        self._flush()

    def chunk(self, frames: np.ndarray, *, last: bool = False) -> None:
        """Seal and write `frames` (n × channels int16); `last` marks the end of the recording."""
        if self._closed:
            raise ValueError(f"recording {self.path.name} is already closed")
        if frames.ndim != 2 or frames.shape[1] != len(self.header.legs):
            raise ValueError(f"expected frames of {len(self.header.legs)} channels, got shape {frames.shape}")
        flags = LAST if last else 0
        nonce = struct.pack(">4xQ", self._index)
        sealed = self._aead.encrypt(nonce, frames.astype("<i2").tobytes(),
                                    _chunk_aad(self.header.file_id, self._index, flags))
        self._file.write(struct.pack(">IB", len(sealed), flags) + sealed)
        self._flush()
        self._index += 1
        self._closed = last

    def close(self) -> None:
        """Write the empty last chunk (if not yet written) and close the file."""
        if not self._closed:
            self.chunk(np.zeros((0, len(self.header.legs)), np.int16), last=True)
        os.fsync(self._file.fileno())
        self._file.close()

    def abandon(self) -> None:
        """Close the file as it is, without the last chunk (a write failed): it reads up to its last whole chunk."""
        self._closed = True
        self._file.close()

    def _flush(self) -> None:
        self._file.flush()
        if time.monotonic() - self._synced >= SYNC_EVERY_S:
            self._synced = time.monotonic()
            _syncer.submit(_fsync_copy, os.dup(self._file.fileno()))


def _fsync_copy(fd: int) -> None:
    """fsync a duplicate of a recording's descriptor (the writer may close its own meanwhile), then close it."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Opened:
    """A recording's audio (n × channels int16) and whether it was closed properly."""

    header: Header
    frames: np.ndarray
    complete: bool

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.header.sample_rate


def read_header(f: BinaryIO, name: str) -> Header:
    """Parse the header at the start of `f`."""
    if f.read(len(MAGIC)) != MAGIC:
        raise RecordingTamperedError(f"{name} is not a sealed recording (bad magic)")
    (length,) = struct.unpack(">I", f.read(4).rjust(4, b"\xff"))
    if length > MAX_HEADER:
        raise RecordingTamperedError(f"{name}: header length {length} is implausible; the file is corrupt")
    try:
        raw = json.loads(f.read(length))
        return Header(raw["file_id"], raw["call_id"], int(raw["sample_rate"]), tuple(raw["legs"]), raw["key_id"],
                      base64.b64decode(raw["wrapped_key"]))
    except (ValueError, KeyError, TypeError) as e:
        raise RecordingTamperedError(f"{name}: the header is corrupt ({type(e).__name__})") from None


def open_sealed(path: Path, ring: KeyRing) -> Opened:
    """Decrypt a whole recording; RecordingTamperedError or RecordingKeyError say why one cannot be opened."""
    index = index_sealed(path)
    parts = list(read_frames(index, ring, 0, index.frames))
    frames = np.concatenate(parts) if parts else np.zeros((0, len(index.header.legs)), np.int16)
    return Opened(index.header, frames, index.complete)


@dataclass(frozen=True, slots=True)
class SealedIndex:
    """Where each whole chunk of a sealed recording lies and which frames it holds, found without decrypting."""

    path: Path
    header: Header
    offsets: np.ndarray
    """Each chunk's sealed bytes start here in the file."""
    lengths: np.ndarray
    flags: np.ndarray
    starts: np.ndarray
    """The first frame of each chunk, then the frame count (one longer than the chunks)."""
    complete: bool

    @property
    def frames(self) -> int:
        """How many frames the whole chunks hold."""
        return int(self.starts[-1])


def index_sealed(path: Path) -> SealedIndex:
    """Read a recording's header and chunk headers (seeking past the audio): what `read_frames` needs."""
    offsets, lengths, flags = [], [], []
    with open(path, "rb") as f:
        header = read_header(f, path.name)
        frame_bytes, size = 2 * len(header.legs), os.fstat(f.fileno()).st_size
        while len(head := f.read(5)) == 5:
            length, flag = struct.unpack(">IB", head)
            if flags and flags[-1] == LAST:
                raise RecordingTamperedError(f"{path.name}: data after the last chunk; the file was altered")
            if length > MAX_CHUNK or flag not in (0, LAST) or length < TAG or (length - TAG) % frame_bytes:
                raise RecordingTamperedError(f"{path.name}: chunk {len(flags)} has an impossible header; the file "
                                             "is corrupt")
            if f.seek(length, os.SEEK_CUR) > size:
                break  # torn by a crash mid-write: the recording ends with the chunk before
            offsets.append(f.tell() - length)
            lengths.append(length)
            flags.append(flag)
    counts = (np.array(lengths, np.int64) - TAG) // frame_bytes
    return SealedIndex(path, header, np.array(offsets, np.int64), np.array(lengths, np.int64),
                       np.array(flags, np.uint8), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                       bool(flags) and flags[-1] == LAST)


def read_frames(index: SealedIndex, ring: KeyRing, first: int, stop: int) -> Iterator[np.ndarray]:
    """Frames [first, stop) (n × channels int16), decrypting only the chunks that hold them, one at a time."""
    aead = AESGCM(index.header.data_key(ring))
    channels = len(index.header.legs)
    k = max(0, int(np.searchsorted(index.starts, first, side="right")) - 1)
    with open(index.path, "rb") as f:
        while k < len(index.offsets) and index.starts[k] < stop:
            f.seek(int(index.offsets[k]))
            flags = int(index.flags[k])
            try:
                plain = aead.decrypt(struct.pack(">4xQ", k), f.read(int(index.lengths[k])),
                                     _chunk_aad(index.header.file_id, k, flags))
            except InvalidTag:
                raise RecordingTamperedError(f"{index.path.name}: chunk {k} fails its integrity check; the "
                                             "recording was altered or damaged") from None
            frames = np.frombuffer(plain, "<i2").astype(np.int16).reshape(-1, channels)
            begin = int(index.starts[k])
            yield frames[max(0, first - begin):stop - begin]
            k += 1


def rewrap(path: Path, ring: KeyRing) -> str:
    """Re-seal the file's data key with the ring's current key (the audio is untouched); returns the new key id."""
    with open(path, "rb") as f:
        header = read_header(f, path.name)
        if header.key_id == ring.current_id:
            return header.key_id
        rest = f.read()
    new = header.wrap(header.data_key(ring), ring)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "xb") as out:
        out.write(new.to_bytes() + rest)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return new.key_id
