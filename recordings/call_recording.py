"""One live call's recording: both legs as the channels of one sealed file, written as the audio arrives."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.codecs import resample
from recordings.sealed import SealedWriter

if TYPE_CHECKING:
    from recordings.store import RecordingStore

LEGS = ("agent", "customer")
CHUNK_S = 0.25
"""Audio is sealed and flushed in pieces this long."""
STALL_S = 0.75
"""A leg silent this long (wall time) while the other streams is padded with silence, so a crash loses < 1 s."""


class RecordingError(OSError):
    """A recording could not be written (disk full, folder missing, permission)."""


class CallRecording:
    """One call's legs as the channels of one sealed file, written as the audio arrives.

    Each leg's audio is placed by its own sample count; a leg that stops streaming is padded with silence
    once nothing has come on it for STALL_S, so both channels stay aligned and at most a second is unwritten.
    """

    def __init__(self, store: RecordingStore, recording_id: str, path: Path) -> None:
        self.store, self.recording_id, self.path = store, recording_id, path
        self.sample_rate = 0
        self._pending = {leg: np.zeros(0, np.int16) for leg in LEGS}
        self._writer: SealedWriter | None = None
        self._written = 0
        self._heard = dict.fromkeys(LEGS, 0.0)
        self._lock = threading.Lock()
        self.error: RecordingError | None = None
        """The failure that stopped this recording; once set, writes are dropped and close writes nothing."""

    @property
    def duration_s(self) -> float:
        """Audio written so far, in seconds."""
        return self._written / self.sample_rate if self.sample_rate else 0.0

    def write(self, leg: str, pcm: np.ndarray, sample_rate: int) -> None:
        """Add a leg's samples; whole pieces are sealed and flushed at once."""
        with self._lock, self._errors():
            if self._writer is None:
                self._heard = dict.fromkeys(LEGS, time.monotonic())
                self.sample_rate = sample_rate
                self._writer = SealedWriter(self.path, self.store.ring, call_id=self.recording_id,
                                            sample_rate=sample_rate, legs=LEGS)
            if sample_rate != self.sample_rate:
                pcm = resample(pcm, sample_rate, self.sample_rate)
            self._pending[leg] = np.concatenate([self._pending[leg], pcm.astype(np.int16)])
            self._heard[leg] = time.monotonic()
            self._drain(final=False)

    def close(self) -> Path | None:
        """Seal what is left and the end marker; the file's path, or None if no audio ever came. A recording that
        failed is closed as it is (readable up to its last whole piece) and raises its error."""
        if self.error is not None and self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.abandon()
        with self._lock, self._errors():
            if self._writer is None:
                return None
            self._drain(final=True)
            self._writer.close()
            return self.path

    def _drain(self, *, final: bool) -> None:
        assert self._writer is not None
        piece, now = round(self.sample_rate * CHUNK_S), time.monotonic()
        while True:
            sizes = [len(p) for p in self._pending.values()]
            stalled = all(len(self._pending[leg]) >= piece or now - self._heard[leg] > STALL_S for leg in LEGS)
            if max(sizes) >= piece and stalled:
                n = piece
            elif final and max(sizes) > 0:
                n = max(sizes)
            else:
                return
            channels = []
            for leg in LEGS:
                take, self._pending[leg] = self._pending[leg][:n], self._pending[leg][n:]
                channels.append(np.pad(take, (0, n - len(take))))
            self._writer.chunk(np.stack(channels, axis=1))
            self._written += n

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn an OSError while writing into a RecordingError that says what to do, kept as this recording's and
        the store's fault (the store's is cleared by the next recording write that succeeds)."""
        if self.error is not None:
            raise self.error
        try:
            yield
        except OSError as e:
            self.error = RecordingError(f"cannot write recording {self.recording_id} to {self.path.parent}: "
                                        f"{e.strerror or type(e).__name__}; free disk space or fix the folder's "
                                        "permissions")
            self.store.fault = str(self.error)
            raise self.error from e
        self.store.fault = None
