"""Transcribe a whole leg of audio through the same gate and stream a live call uses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from asr.codecs import Audio
from asr.vad import SpeechChunk, SpeechEnd, VoiceGate
from asr.vosk_engine import AsrEvent, AsrStream, VoskEngine, Word, join_words
from asr.whisper_engine import WhisperEngine, WhisperStream

FEED_MS = 100
LEG_NAMES = ("agent", "customer")
"""Stereo recordings carry one leg per channel: left is the agent or bot, right the customer."""


@dataclass(frozen=True, slots=True)
class LegTranscript:
    """The final results of one leg, in call time."""

    leg: str | None
    finals: tuple[AsrEvent, ...]
    duration_s: float

    @property
    def text(self) -> str:
        """All final text of the leg, joined."""
        return join_words([e.text for e in self.finals])

    @property
    def words(self) -> tuple[Word, ...]:
        """Every recognised word of the leg."""
        return tuple(w for e in self.finals for w in e.words)


def leg_events(
    engine: VoskEngine | WhisperEngine, pcm: np.ndarray, sample_rate: int, *, vad: bool = True, partials: bool = True
) -> Iterator[AsrEvent]:
    """Feed one leg in 100 ms pieces, as a live call would, yielding partial (unless not wanted) and final results."""
    stream = engine.stream(sample_rate, partials=partials)
    gate = VoiceGate(sample_rate) if vad else None
    step = sample_rate * FEED_MS // 1000
    try:
        for i in range(0, len(pcm), step):
            piece = pcm[i : i + step]
            if gate is None:
                yield from stream.accept(piece, i / sample_rate)
                continue
            for event in gate.accept(piece):
                yield from _feed(stream, event)
        if gate is not None:
            for event in gate.finish():
                yield from _feed(stream, event)
        yield from stream.finish()
    finally:
        stream.close()  # the next leg or recording reuses the recognizer and its expanded graph


def _feed(stream: AsrStream | WhisperStream, event: SpeechChunk | SpeechEnd) -> list[AsrEvent]:
    if isinstance(event, SpeechChunk):
        return stream.accept(event.pcm, event.start_s)
    return stream.finish()


def transcribe_audio(engine: VoskEngine | WhisperEngine, audio: Audio, *, vad: bool = True) -> list[LegTranscript]:
    """Transcribe every channel of `audio`; a stereo file gives an agent and a customer leg."""
    names = _leg_names(len(audio.channels))
    return [
        LegTranscript(
            leg=name,
            finals=tuple(leg_events(engine, pcm, audio.sample_rate, vad=vad, partials=False)),
            duration_s=audio.duration_s,
        )
        for name, pcm in zip(names, audio.channels, strict=True)
    ]


def _leg_names(channels: int) -> tuple[str | None, ...]:
    if channels == 1:
        return (None,)
    if channels == 2:
        return LEG_NAMES
    return tuple(f"channel{i}" for i in range(channels))
