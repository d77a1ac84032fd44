"""Offline speaker diarization of mono recordings (pyannote.audio with a GE2E embedding), and splitting by speaker."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr.codecs import MAX_FILE_RATE, MIN_FILE_RATE, AudioFormatError, resample
from asr.torchaudio_stub import stub_torchaudio_extensions
from asr.vosk_engine import ModelMissingError

log = logging.getLogger(__name__)

SEGMENTATION_DIR = "pyannote-segmentation-legacy"
EMBEDDING_DIR = "resemblyzer-ge2e"
PLDA_DIR = "pyannote-community1-plda"
MODEL_FILES = {
    SEGMENTATION_DIR: ("pytorch_model.bin",),
    EMBEDDING_DIR: ("pretrained.pt",),
    PLDA_DIR: ("plda.npz", "xvec_transform.npz"),
}
"""The diarization model folders in the models folder, and the files each must hold."""
PIPELINE_RATE = 16000
MIN_SPEECH_S = 0.5
PIPELINE_PARAMETERS = {
    "segmentation": {"threshold": 0.4442, "min_duration_off": 0.0},
    "clustering": {"method": "average", "min_cluster_size": 12, "threshold": 0.3},
}
AGENT_PHRASES = (
    "逾期", "欠款", "还款", "录音", "贷后", "本人", "身份证", "尾号", "信用卡", "账单", "催收", "委托", "最低还款",
    "overdue", "payment", "this call is recorded", "debt collector", "past due", "balance", "attempt to collect",
)
"""Phrases a collection agent says far more often than a customer."""


class DiarizationModelMissingError(ModelMissingError):
    """A diarization model folder is missing or incomplete in the models folder."""


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """A stretch of one speaker's speech, in seconds from the start of the recording."""

    start_s: float
    end_s: float
    speaker: str


def check_diarization_models(models_dir: Path) -> Path:
    """Return `models_dir` if it holds every diarization model file, else raise DiarizationModelMissingError."""
    for folder, files in MODEL_FILES.items():
        missing = [name for name in files if not (models_dir / folder / name).is_file()]
        if missing:
            raise DiarizationModelMissingError(
                f"diarization model folder {models_dir / folder} is missing or incomplete (no {', '.join(missing)}); "
                "run `voicebot models fetch`"
            )
    return models_dir


class Diarizer:
    """A loaded diarization pipeline: who spoke when in a mono recording."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    @classmethod
    def load(cls, models_dir: str | Path) -> Diarizer:
        """Load the segmentation, GE2E embedding and PLDA models (blocking, seconds); do it once per process."""
        started = time.monotonic()
        models_dir = check_diarization_models(Path(models_dir))
        _prepare_pyannote()
        from pyannote.audio.pipelines import SpeakerDiarization

        from asr.ge2e import GE2EEmbedding

        pipeline = SpeakerDiarization(
            segmentation=str(models_dir / SEGMENTATION_DIR / "pytorch_model.bin"),
            embedding=GE2EEmbedding(models_dir / EMBEDDING_DIR / "pretrained.pt"),
            plda=str(models_dir / PLDA_DIR),
            clustering="AgglomerativeClustering",
            embedding_batch_size=32,
            segmentation_batch_size=32,
        )
        pipeline.instantiate(PIPELINE_PARAMETERS)
        log.info("diarization models loaded in %.1f s", time.monotonic() - started)
        return cls(pipeline)

    def turns(self, pcm: np.ndarray, sample_rate: int, num_speakers: int | None = 2) -> list[SpeakerTurn]:
        """Speaker turns of mono int16 audio, by start; overlapping speech yields overlapping turns.

        Audio under 0.5 s or all zero gives no turns. `num_speakers=None` lets the pipeline estimate how many
        speakers there are (roughly: GE2E embeddings separate distinct voices, not similar ones).
        """
        pcm = _check_mono(pcm, sample_rate)
        if len(pcm) < MIN_SPEECH_S * sample_rate or not np.any(pcm):
            return []
        import torch

        waveform = torch.from_numpy(resample(pcm, sample_rate, PIPELINE_RATE).astype(np.float32) / 32768.0)[None]
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr), _flush_denormals():
            warnings.simplefilter("ignore")  # pyannote prints clustering notes and warns about unused features
            output = self.pipeline({"waveform": waveform, "sample_rate": PIPELINE_RATE}, num_speakers=num_speakers)
        duration_s = len(pcm) / sample_rate
        turns = [SpeakerTurn(round(segment.start, 3), round(min(segment.end, duration_s), 3), str(label))
                 for segment, _, label in output.speaker_diarization.itertracks(yield_label=True)
                 if segment.start < duration_s]
        return sorted(turns, key=lambda t: (t.start_s, t.speaker))


def split_by_speaker(pcm: np.ndarray, sample_rate: int, turns: list[SpeakerTurn], agent_speaker: str) -> np.ndarray:
    """Two-leg audio (n, 2) int16: channel 0 the agent's turns, channel 1 everyone else's, silence elsewhere."""
    pcm = _check_mono(pcm, sample_rate)
    legs = np.zeros((len(pcm), 2), dtype=np.int16)
    for turn in turns:
        start, end = (min(len(pcm), max(0, round(t * sample_rate))) for t in (turn.start_s, turn.end_s))
        channel = 0 if turn.speaker == agent_speaker else 1
        legs[start:end, channel] = pcm[start:end]
    return legs


def agent_speaker(texts_by_speaker: dict[str, str], first_speaker: str) -> str:
    """The speaker whose text holds the most collection-agent phrases; on a tie, the one who spoke first."""
    scores = {speaker: _agent_phrase_count(text) for speaker, text in texts_by_speaker.items()}
    best = max(scores.values(), default=0)
    if scores.get(first_speaker, 0) == best:
        return first_speaker
    return next(speaker for speaker, score in scores.items() if score == best)


def _agent_phrase_count(text: str) -> int:
    """How many times agent phrases occur in `text` (spaces between Chinese words and letter case ignored)."""
    spaced = " ".join(text.lower().split())
    packed = re.sub(r"\s+", "", spaced)
    return sum((spaced if phrase.isascii() else packed).count(phrase) for phrase in AGENT_PHRASES)


def _check_mono(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """Return `pcm` if it is mono int16 audio at a usable rate, else raise AudioFormatError."""
    if not isinstance(pcm, np.ndarray) or pcm.ndim != 1 or pcm.dtype != np.int16:
        raise AudioFormatError("diarization needs one channel of int16 samples; mix or pick a channel first")
    if not MIN_FILE_RATE <= sample_rate <= MAX_FILE_RATE:
        raise AudioFormatError(f"sample rate {sample_rate} Hz is outside {MIN_FILE_RATE}–{MAX_FILE_RATE} Hz")
    return pcm


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero on this thread while the pipeline runs (fast on silence), then restore."""
    import torch

    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _prepare_pyannote() -> None:
    """Set pyannote up to run offline, without torchaudio's or torchcodec's compiled libraries."""
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
    stub_torchaudio_extensions()
    logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly")
        import pyannote.audio  # noqa: F401
