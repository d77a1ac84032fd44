"""Import external recordings (WAV, MP3, FLAC; mono or stereo) into the sealed store, one channel per leg."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from asr.codecs import Audio, read_audio_file
from asr.diarize import Diarizer, agent_speaker, split_by_speaker
from asr.transcribe import leg_events
from asr.vosk_engine import VoskEngine, join_words
from recordings.call_recording import CHUNK_S, LEGS
from recordings.store import RecordingStore, new_recording_id

SplitMono = Callable[[np.ndarray, int], np.ndarray]
"""Mono audio → (n, 2) int16, agent then customer: speaker diarization."""


@dataclass(frozen=True, slots=True)
class Imported:
    """What an import stored."""

    recording_id: str
    duration_s: float
    sample_rate: int
    diarized: bool


def two_legs(audio: Audio, *, swap: bool, split_mono: SplitMono | None) -> tuple[np.ndarray, bool]:
    """(n, 2) agent/customer frames: a stereo file's channels (left is the agent unless `swap`), or a mono
    file split by speaker."""
    if len(audio.channels) == 2:
        agent, customer = audio.channels[::-1] if swap else audio.channels
        return np.stack([agent, customer], axis=1), False
    if len(audio.channels) != 1:
        raise ValueError(f"a call recording has one or two channels, not {len(audio.channels)}")
    if split_mono is None:
        raise ValueError("a mono recording needs speaker diarization to split it into agent and customer")
    return split_mono(audio.channels[0], audio.sample_rate), True


def diarized_split(diarizer: Diarizer, engine: VoskEngine) -> SplitMono:
    """Split mono audio by speaker; the speaker who sounds like the collector (by transcript) is the agent.

    Audio in which no speaker is found goes on the agent channel, so the agent rules still screen it."""

    def split(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        turns = diarizer.turns(pcm, sample_rate)
        if not turns:
            return np.stack([pcm, np.zeros_like(pcm)], axis=1)
        texts = {}
        for speaker in sorted({t.speaker for t in turns}):
            own = split_by_speaker(pcm, sample_rate, [t for t in turns if t.speaker == speaker], speaker)[:, 0]
            texts[speaker] = join_words([e.text for e in leg_events(engine, own, sample_rate, partials=False)])
        return split_by_speaker(pcm, sample_rate, turns, agent_speaker(texts, turns[0].speaker))

    return split


def import_recording(store: RecordingStore, path: Path, *, agent_id: str | None, account_id: str | None = None,
                     started_at: datetime | None = None, swap: bool = False,
                     split_mono: SplitMono | None = None) -> Imported:
    """Read, split into legs if mono, and seal one recording; AudioFormatError for unreadable audio."""
    audio = read_audio_file(path)
    frames, diarized = two_legs(audio, swap=swap, split_mono=split_mono)
    started_at = started_at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    recording_id = new_recording_id()
    store.register(recording_id, started_at=started_at, source="import", adapter="import", agent_id=agent_id,
                   account_id=account_id, original_name=path.name)
    writer = store.writer(recording_id, started_at)
    step = round(audio.sample_rate * CHUNK_S)
    for at in range(0, len(frames), step):
        for channel, leg in enumerate(LEGS):
            writer.write(leg, frames[at:at + step, channel], audio.sample_rate)
    writer.close()
    store.finish(recording_id, ended_at=started_at + timedelta(seconds=writer.duration_s),
                 duration_s=writer.duration_s, sample_rate=audio.sample_rate)
    return Imported(recording_id, writer.duration_s, audio.sample_rate, diarized)
