"""English speech recognition with faster-whisper (CTranslate2, int8 on the CPU) behind the Vosk engine's interface:
Whisper decodes whole pieces of speech, so a stream keeps the current utterance (the VAD gate bounds it), drafts it
as it grows for partial results (no alignment), and decodes it once more when it ends for the final one (aligned, word
times in call time); both read the speech in a window just longer than it, not Whisper's 30 s."""

from __future__ import annotations

import threading
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from asr.codecs import resample
from asr.vosk_engine import AsrEvent, ModelMissingError, Word, join_words

RATE = 16_000
PARTIAL_EVERY_S = 1.0
"""A growing utterance is re-decoded for a partial result after this much more speech."""
MAX_UTTERANCE_S = 25.0
"""Whisper reads 30 s at most: a longer utterance is settled here and the next begins."""
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
PAD_S = 5.0
"""Whisper encodes the speech and this much silence after it, not its 30 s window: about a seventh of the cost, and
on real-en prefixes of 1-5 s it reads what the full window reads but for 8% of the words."""
DRAFT_TOKENS_PER_S = 6
"""A draft stops after this many tokens per second of speech (plus a few): a short window can make Whisper repeat."""
FINAL_TOKENS_PER_S = 10
"""A final result's cap: room for fast speech."""
NO_SPEECH = 0.6
"""What Whisper itself thinks is no speech at this probability or more reads as nothing."""
FRAMES_PER_S = 100


def check_whisper_dir(model_dir: Path) -> Path:
    """The model folder if it holds a CTranslate2 Whisper model; ModelMissingError naming what to run if not."""
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelMissingError(f"English Whisper model not found at {model_dir} (missing {', '.join(missing)}); "
                                "run `voicebot models fetch`")
    return model_dir


class WhisperEngine:
    """One loaded model per process; `stream()` gives each leg its own utterance buffer."""

    def __init__(self, model: WhisperModel, model_dir: Path) -> None:
        self.model, self.model_dir = model, model_dir
        self._tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
        self._prompt = model.get_prompt(self._tokenizer, [], without_timestamps=True)

    @classmethod
    def load(cls, model_dir: str | Path, *, threads: int = 1, workers: int = 2) -> WhisperEngine:
        """Load the model once (blocking); `workers` legs may decode at the same time, each on `threads` cores."""
        folder = check_whisper_dir(Path(model_dir))
        return cls(WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads,
                                num_workers=workers), folder)

    def stream(self, sample_rate: int, phrases: list[str] | None = None, *, partials: bool = True) -> WhisperStream:
        """A recognizer for one leg at `sample_rate` (8 or 16 kHz); `phrases` is accepted for the interface."""
        return WhisperStream(self, sample_rate, partials=partials)

    def draft(self, pcm16k: np.ndarray, offset_s: float) -> tuple[Word, ...]:
        """A quick reading of 16 kHz speech for a partial result, its words spread evenly over the speech's time
        (a draft is not aligned)."""
        _, tokens, _ = self._read(pcm16k, DRAFT_TOKENS_PER_S)
        words = self._tokenizer.decode(tokens).split()
        step = len(pcm16k) / RATE / max(1, len(words))
        return tuple(Word(word=w, start_s=round(offset_s + i * step, 3), end_s=round(offset_s + (i + 1) * step, 3))
                     for i, w in enumerate(words))

    def decode(self, pcm16k: np.ndarray, offset_s: float) -> tuple[Word, ...]:
        """The words of 16 kHz speech, aligned to it, their times moved by `offset_s`."""
        encoded, tokens, frames = self._read(pcm16k, FINAL_TOKENS_PER_S)
        if not tokens:
            return ()
        [aligned] = self.model.find_alignment(self._tokenizer, [tokens], encoded, frames)
        return tuple(Word(word=w["word"].strip(), start_s=round(offset_s + w["start"], 3),
                          end_s=round(offset_s + w["end"], 3), conf=round(w["probability"], 3))
                     for w in aligned if w["word"].strip())

    def _read(self, pcm16k: np.ndarray, tokens_per_s: int) -> tuple[ctranslate2.StorageView, list[int], int]:
        """Whisper's encoding of the speech and PAD_S of silence after it (not its 30 s window), the text tokens it
        reads there (none for what it thinks is no speech, at most `tokens_per_s` a second and a few), and the
        speech's frames."""
        features = self.model.feature_extractor(pcm16k.astype(np.float32) / 32768)
        frames = features.shape[1]
        width = min(self.model.feature_extractor.nb_max_frames, frames + int(PAD_S * FRAMES_PER_S))
        width += width % 2
        features = np.pad(features, ((0, 0), (0, max(0, width - frames))))[:, :width]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(
            np.ascontiguousarray(features[None], dtype=np.float32)), to_cpu=False)
        [result] = self.model.model.generate(
            encoded, [self._prompt], beam_size=1, suppress_blank=True, suppress_tokens=[-1],
            max_length=len(self._prompt) + 8 + tokens_per_s * frames // FRAMES_PER_S, return_no_speech_prob=True)
        if result.no_speech_prob >= NO_SPEECH:
            return encoded, [], frames
        return encoded, [t for t in result.sequences_ids[0] if t < self._tokenizer.eot], frames


class WhisperStream:
    """One leg's utterance: feed speech with its call time, get partial and final results."""

    def __init__(self, engine: WhisperEngine, sample_rate: int, *, partials: bool = True) -> None:
        self.engine, self.sample_rate, self._partials = engine, sample_rate, partials
        self._pieces: list[np.ndarray] = []
        self._start_s: float | None = None
        self._next_s = 0.0
        self._since_partial_s = 0.0
        self._last_partial = ""
        self._lock = threading.Lock()
        self.audio_s = 0.0

    def accept(self, pcm: np.ndarray, start_s: float | None = None) -> list[AsrEvent]:
        """Feed int16 samples starting at call time `start_s` (default: right after the last ones)."""
        start_s = self._next_s if start_s is None else start_s
        duration_s = len(pcm) / self.sample_rate
        self._next_s, self.audio_s = start_s + duration_s, self.audio_s + duration_s
        with self._lock:
            if self._start_s is None:
                self._start_s = start_s
            self._pieces.append(resample(np.asarray(pcm, dtype=np.int16), self.sample_rate, RATE))
            if self._next_s - self._start_s >= MAX_UTTERANCE_S:
                return self._final()
            self._since_partial_s += duration_s
            if not self._partials or self._since_partial_s < PARTIAL_EVERY_S:
                return []
            self._since_partial_s = 0.0
            return self._partial()

    def finish(self) -> list[AsrEvent]:
        """Settle the current utterance (speech ended, or the leg did); the stream stays usable."""
        with self._lock:
            return self._final()

    def close(self) -> None:
        """Drop what is left; the stream is unusable afterwards."""
        with self._lock:
            self._pieces = []

    def _words(self) -> tuple[Word, ...]:
        if not self._pieces or self._start_s is None:
            return ()
        return self.engine.decode(np.concatenate(self._pieces), self._start_s)

    def _partial(self) -> list[AsrEvent]:
        if self._start_s is None:
            return []
        words = self.engine.draft(np.concatenate(self._pieces), self._start_s)
        text = join_words([w.word for w in words])
        if not text or text == self._last_partial:
            return []
        self._last_partial = text
        return [AsrEvent(kind="partial", text=text, words=words)]

    def _final(self) -> list[AsrEvent]:
        words = self._words()
        self._pieces, self._start_s, self._since_partial_s, self._last_partial = [], None, 0.0, ""
        return [AsrEvent(kind="final", text=join_words([w.word for w in words]), words=words)] if words else []
