"""Call recordings written while the call runs: one WAV per leg, flushed every second."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import soundfile as sf

FLUSH_EVERY_S = 1.0


class RecordingError(OSError):
    """A recording could not be written (disk full, folder missing, permission)."""


class CallRecording:
    """The legs of one call, each written to `<dir>/<call_id>.<leg>.wav` as it arrives."""

    def __init__(self, folder: Path, call_id: str) -> None:
        self.folder = folder
        self.call_id = call_id
        self._files: dict[str, sf.SoundFile] = {}
        self._unflushed: dict[str, int] = {}
        self._lock = threading.Lock()

    def path(self, leg: str) -> Path:
        """Where the leg's audio is written."""
        return self.folder / f"{self.call_id}.{leg}.wav"

    def write(self, leg: str, pcm: np.ndarray, sample_rate: int) -> None:
        """Append samples to the leg's file; flushed to disk at least once a second of audio."""
        with self._lock:
            try:
                f = self._files.get(leg)
                if f is None:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    f = self._files[leg] = sf.SoundFile(self.path(leg), "w", samplerate=sample_rate, channels=1,
                                                        subtype="PCM_16")
                f.write(pcm)
                self._unflushed[leg] = self._unflushed.get(leg, 0) + len(pcm)
                if self._unflushed[leg] >= sample_rate * FLUSH_EVERY_S:
                    f.flush()
                    self._unflushed[leg] = 0
            except (OSError, sf.SoundFileError) as e:
                raise RecordingError(f"cannot write the {leg} leg of call {self.call_id} to {self.folder}: "
                                     f"{type(e).__name__}; free disk space or fix the folder's permissions") from e

    def close(self) -> list[Path]:
        """Finish every leg's file and return their paths."""
        with self._lock:
            for f in self._files.values():
                f.close()
            return [self.path(leg) for leg in self._files]
