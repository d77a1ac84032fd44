"""Asterisk AudioSocket's framing (res_audiosocket.h): frame kinds, parsing and writing, checked as they arrive."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass


class ProtocolError(ValueError):
    """An AudioSocket frame that breaks the protocol; `fatal` when the byte stream can no longer be trusted."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class Kind(enum.IntEnum):
    """AudioSocket frame types (res_audiosocket.h)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    AUDIO_12K = 0x11
    AUDIO_16K = 0x12
    AUDIO_24K = 0x13
    AUDIO_32K = 0x14
    AUDIO_44K = 0x15
    AUDIO_48K = 0x16
    AUDIO_96K = 0x17
    AUDIO_192K = 0x18
    ERROR = 0xFF


AUDIO_RATES = {Kind.AUDIO: 8000, Kind.AUDIO_12K: 12000, Kind.AUDIO_16K: 16000, Kind.AUDIO_24K: 24000,
               Kind.AUDIO_32K: 32000, Kind.AUDIO_44K: 44100, Kind.AUDIO_48K: 48000, Kind.AUDIO_96K: 96000,
               Kind.AUDIO_192K: 192000}
"""16-bit little-endian mono PCM at each audio kind's rate."""
_KINDS = frozenset(k.value for k in Kind)
ACCEPTED_RATES = {8000: Kind.AUDIO, 16000: Kind.AUDIO_16K}
HEADER = struct.Struct(">BH")
MAX_PAYLOAD_BYTES = 8192
"""256 ms of 16 kHz audio; a longer frame means the byte stream is broken."""
DTMF_DIGITS = frozenset(b"0123456789*#ABCD")
@dataclass(frozen=True, slots=True)
class AudioSocketFrame:
    """One frame: its kind and payload."""

    kind: Kind
    payload: bytes = b""

    @property
    def sample_rate(self) -> int | None:
        """The audio's sample rate, for an audio frame."""
        return AUDIO_RATES.get(self.kind)


def parse_frames(buffer: bytearray) -> list[AudioSocketFrame]:
    """Take every complete frame from the front of `buffer`, leaving a partial one.

    A malformed first frame raises ProtocolError (consumed unless fatal); one after good frames waits for the next call.
    """
    frames: list[AudioSocketFrame] = []
    while len(buffer) >= HEADER.size:
        try:
            kind, length = _check_header(*HEADER.unpack_from(buffer))
            end = HEADER.size + length
            if len(buffer) < end:
                break
            frame = _check_frame(kind, bytes(buffer[HEADER.size : end]))
        except ProtocolError as e:
            if frames:
                break
            if not e.fatal:
                del buffer[:end]
            raise
        del buffer[:end]
        frames.append(frame)
    return frames


def _check_header(kind: int, length: int) -> tuple[Kind, int]:
    if kind not in _KINDS:
        raise ProtocolError(f"unknown AudioSocket frame type 0x{kind:02x}", fatal=True)
    if length > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"AudioSocket frame of {length} bytes exceeds {MAX_PAYLOAD_BYTES}", fatal=True)
    return Kind(kind), length


def _check_frame(kind: Kind, payload: bytes) -> AudioSocketFrame:
    if kind is Kind.UUID and len(payload) != 16:
        raise ProtocolError(f"UUID frame of {len(payload)} bytes; a UUID is 16 bytes")
    if kind is Kind.DTMF and (len(payload) != 1 or payload[0] not in DTMF_DIGITS):
        raise ProtocolError("DTMF frame must carry one digit 0-9, *, #, A-D")
    rate = AUDIO_RATES.get(kind)
    if rate is not None and rate not in ACCEPTED_RATES:
        raise ProtocolError(f"AudioSocket audio at {rate} Hz is not supported; set the channel to slin (8 kHz) "
                            f"or slin16 (16 kHz)")
    if rate is not None and len(payload) % 2:
        raise ProtocolError(f"audio frame of {len(payload)} bytes; 16-bit PCM needs an even length")
    return AudioSocketFrame(kind, payload)


def serialize_frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame on the wire: type, big-endian payload length, payload."""
    if len(payload) > 0xFFFF:
        raise ProtocolError(f"an AudioSocket payload holds at most 65535 bytes, not {len(payload)}")
    return HEADER.pack(kind, len(payload)) + payload
