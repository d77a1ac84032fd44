"""Voice activity gate: webrtcvad decides per 20 ms frame; speech passes with padding, silence is dropped."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from asr.codecs import check_stream_rate

FRAME_MS = 20


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """Speech audio to recognise, starting `start_s` into the call."""

    pcm: np.ndarray
    start_s: float


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """The talker fell silent at `end_s` (after the hangover): the utterance is over."""

    end_s: float


@dataclass(frozen=True, slots=True)
class SpeechPause:
    """The talker has been silent a short while at `end_s`: the utterance may be over, or may go on."""

    end_s: float


GateEvent = SpeechChunk | SpeechPause | SpeechEnd


class VoiceGate:
    """Gates one leg's audio: speech (plus pre-roll and hangover) passes, silence is dropped; with `pause_ms`, a
    shorter silence inside an utterance is announced too (a turn may end there if what was said is complete)."""

    def __init__(
        self,
        sample_rate: int,
        *,
        aggressiveness: int = 1,
        preroll_ms: int = 300,
        hangover_ms: int = 600,
        onset_frames: int = 3,
        pause_ms: int | None = None,
    ) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"VAD aggressiveness must be 0–3, not {aggressiveness}")
        self.sample_rate = check_stream_rate(sample_rate)
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self._vad = webrtcvad.Vad(aggressiveness)
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, preroll_ms // FRAME_MS))
        self._hangover_frames = max(1, hangover_ms // FRAME_MS)
        self._onset_frames = onset_frames
        self._pause_frames = max(1, pause_ms // FRAME_MS) if pause_ms else None
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames_seen = 0
        self._voiced_run = 0
        self._silent_run = 0
        self.in_speech = False
        self.paused = False
        """In speech, but silent since a SpeechPause; the next voiced frame resumes the utterance."""

    @property
    def speaking(self) -> bool:
        """In an utterance and not silent since a SpeechPause."""
        return self.in_speech and not self.paused

    def accept(self, pcm: np.ndarray) -> list[GateEvent]:
        """Feed int16 samples (any length); returns the speech to recognise and utterance ends."""
        buf = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        n = self.frame_samples
        whole = len(buf) // n * n
        self._pending = buf[whole:]
        events: list[GateEvent] = []
        for i in range(0, whole, n):
            events.extend(self._frame(buf[i : i + n]))
        return _merge_chunks(events)

    def finish(self) -> list[GateEvent]:
        """Flush at the end of the leg: a trailing utterance is passed and closed."""
        events: list[GateEvent] = []
        if self.in_speech:
            if len(self._pending):
                events.append(SpeechChunk(pcm=self._pending, start_s=self._time_s(self._frames_seen)))
            end = self._time_s(self._frames_seen) + len(self._pending) / self.sample_rate
            events.append(SpeechEnd(end_s=end))
            self.in_speech = False
        self._pending = np.zeros(0, dtype=np.int16)
        return events

    def _time_s(self, frame_index: int) -> float:
        return frame_index * self.frame_samples / self.sample_rate

    def _frame(self, frame: np.ndarray) -> list[GateEvent]:
        index = self._frames_seen
        self._frames_seen += 1
        voiced = self._vad.is_speech(frame.tobytes(), self.sample_rate)
        if not self.in_speech:
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            self._preroll.append(frame)
            if self._voiced_run < self._onset_frames:
                return []
            self.in_speech, self._silent_run = True, 0
            first = index - len(self._preroll) + 1
            chunk = SpeechChunk(pcm=np.concatenate(list(self._preroll)), start_s=self._time_s(first))
            self._preroll.clear()
            return [chunk]
        self._silent_run = 0 if voiced else self._silent_run + 1
        self.paused = self.paused and not voiced
        events: list[GateEvent] = [SpeechChunk(pcm=frame, start_s=self._time_s(index))]
        if self._silent_run == self._pause_frames and self._silent_run < self._hangover_frames:
            self.paused = True
            events.append(SpeechPause(end_s=self._time_s(index + 1)))
        if self._silent_run >= self._hangover_frames:
            self.in_speech, self.paused, self._voiced_run = False, False, 0
            events.append(SpeechEnd(end_s=self._time_s(index + 1)))
        return events


def _merge_chunks(events: list[GateEvent]) -> list[GateEvent]:
    """Join contiguous speech chunks so the recognizer gets fewer, larger buffers."""
    merged: list[GateEvent] = []
    run: list[SpeechChunk] = []
    for event in [*events, None]:
        if isinstance(event, SpeechChunk):
            run.append(event)
            continue
        if run:
            merged.append(SpeechChunk(pcm=np.concatenate([c.pcm for c in run]), start_s=run[0].start_s))
            run = []
        if event is not None:
            merged.append(event)
    return merged
