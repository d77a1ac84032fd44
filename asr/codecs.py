"""Telephone codecs, resampling and audio file reading: everything becomes 16-bit PCM as int16 arrays."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
import soxr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib G.711 up to 3.12; the audioop-lts package from 3.13

Encoding = Literal["pcm16", "ulaw", "alaw"]

ENCODINGS: tuple[Encoding, ...] = ("pcm16", "ulaw", "alaw")
STREAM_RATES = (8000, 16000)
"""Sample rates a live leg may carry; files of other rates are resampled to 16 kHz."""
MIN_FILE_RATE = 8000
MAX_FILE_RATE = 192000


class AudioFormatError(ValueError):
    """Audio that cannot be decoded: unknown encoding, wrong rate, corrupt or truncated data."""


@dataclass(frozen=True, slots=True)
class Audio:
    """Decoded audio: one int16 array per channel, all at `sample_rate`."""

    channels: tuple[np.ndarray, ...]
    sample_rate: int

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.channels[0]) / self.sample_rate if self.channels else 0.0


def check_stream_rate(sample_rate: int) -> int:
    """Return `sample_rate` if a live leg may carry it, else raise AudioFormatError."""
    if sample_rate not in STREAM_RATES:
        raise AudioFormatError(
            f"unsupported sample rate {sample_rate} Hz for a call leg; use 8000 or 16000 Hz"
        )
    return sample_rate


def decode(payload: bytes, encoding: Encoding) -> np.ndarray:
    """Decode raw PCM16 (little-endian), μ-law or A-law bytes to int16 samples."""
    if encoding == "pcm16":
        if len(payload) % 2:
            raise AudioFormatError(f"PCM16 payload has an odd length ({len(payload)} bytes)")
        return np.frombuffer(payload, dtype="<i2").astype(np.int16)
    if encoding == "ulaw":
        return np.frombuffer(audioop.ulaw2lin(payload, 2), dtype=np.int16)
    if encoding == "alaw":
        return np.frombuffer(audioop.alaw2lin(payload, 2), dtype=np.int16)
    raise AudioFormatError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")


def encode(pcm: np.ndarray, encoding: Encoding) -> bytes:
    """Encode int16 samples as raw PCM16 (little-endian), μ-law or A-law bytes."""
    raw = np.asarray(pcm, dtype="<i2").tobytes()
    if encoding == "pcm16":
        return raw
    if encoding == "ulaw":
        return audioop.lin2ulaw(raw, 2)
    if encoding == "alaw":
        return audioop.lin2alaw(raw, 2)
    raise AudioFormatError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")


def resample(pcm: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample int16 samples with soxr (high quality); returns int16."""
    if from_rate == to_rate:
        return pcm
    return soxr.resample(pcm, from_rate, to_rate, quality="HQ").astype(np.int16)


def read_audio_file(path: str | Path) -> Audio:
    """Read a WAV/FLAC/OGG/… file of any common rate; 8 and 16 kHz are kept, other rates become 16 kHz."""
    path = Path(path)
    try:
        data, rate = soundfile.read(path, dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioFormatError(
            f"{path} is not a readable audio file (corrupt, truncated or unsupported format)"
        ) from e
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
        raise AudioFormatError(f"{path}: sample rate {rate} Hz is outside {MIN_FILE_RATE}–{MAX_FILE_RATE} Hz")
    if data.shape[0] == 0:
        raise AudioFormatError(f"{path} holds no audio samples")
    target = rate if rate in STREAM_RATES else 16000
    channels = tuple(resample(np.ascontiguousarray(data[:, c]), rate, target) for c in range(data.shape[1]))
    return Audio(channels=channels, sample_rate=target)


def read_raw_file(path: str | Path, encoding: Encoding, sample_rate: int) -> Audio:
    """Read a headerless mono file of PCM16, μ-law or A-law samples at 8 or 16 kHz."""
    check_stream_rate(sample_rate)
    payload = Path(path).read_bytes()
    if not payload:
        raise AudioFormatError(f"{path} holds no audio samples")
    return Audio(channels=(decode(payload, encoding),), sample_rate=sample_rate)
