"""Streaming speech recognition with Vosk: one shared model (and decoding graph) per process, one recognizer per leg."""

from __future__ import annotations

import bisect
import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import vosk

from asr.codecs import check_stream_rate
from asr.static_graph import static_graph

log = logging.getLogger(__name__)

MODEL_MARKERS = ("am/final.mdl", "conf/model.conf")
MAX_WORD_CHARS = 8
PARTIAL_INTERVAL_S = 0.2
UNKNOWN_WORD = "[unk]"
DECODING = {"beam": 10.0, "max-active": 2000, "lattice-beam": 3.0}
"""Decoder search limits that replace the model's own (beam 12, max-active 5000, lattice-beam 4): chosen by
bench/asr.py on real-cmn, where they keep CER within a point and cut the recognizer's CPU."""
LIVE_DECODING = {**DECODING, "determinize-max-delay": 10, "determinize-min-chunk-size": 3}
"""Live calls also determinize the lattice every 3 frames, at most 10 behind (Kaldi's defaults: 20 and 60), so
partial results trail the audio by ~0.6 s instead of ~1.2 s and rules act mid-phrase; about a fifth more CPU,
which offline transcription and screening do not pay."""
POOL_SIZE = 4
"""Idle recognizers kept per sample rate for the next calls. On the shared static graph one holds only its decoder's
state (a few MiB); on the lookahead pair it keeps its expanded graph (about 70 MB, a third less CPU next call)."""


class ModelMissingError(FileNotFoundError):
    """The Vosk model folder is missing or incomplete."""


@dataclass(frozen=True, slots=True)
class Word:
    """A recognised word with its start and end in call time."""

    word: str
    start_s: float
    end_s: float
    conf: float = 1.0


@dataclass(frozen=True, slots=True)
class AsrEvent:
    """A partial (may still change) or final (settled) result for one utterance."""

    kind: Literal["partial", "final"]
    text: str
    words: tuple[Word, ...]

    @property
    def start_s(self) -> float | None:
        """Call time of the first word, if any."""
        return self.words[0].start_s if self.words else None

    @property
    def end_s(self) -> float | None:
        """Call time of the end of the last word, if any."""
        return self.words[-1].end_s if self.words else None


def join_words(words: list[str] | tuple[str, ...]) -> str:
    """Join recognised words: no space between Chinese characters, one between Latin words (and after an English
    sentence's full stop)."""
    text = ""
    for word in words:
        if text and word and _is_latin(text[-1]) and _is_latin(word[0]):
            text += " "
        text += word
    return text


def _is_latin(char: str) -> bool:
    return char.isascii() and not char.isspace()


def check_model_dir(model_dir: Path) -> Path:
    """Return `model_dir` if it holds a complete Vosk model, else raise ModelMissingError."""
    missing = [m for m in MODEL_MARKERS if not (model_dir / m).is_file()]
    if not model_dir.is_dir() or missing:
        raise ModelMissingError(
            f"Vosk model not found at {model_dir}"
            + (f" (missing {', '.join(missing)})" if model_dir.is_dir() else "")
            + "; set VOICEBOT_VOSK_MODEL to a model folder or run `voicebot models fetch`"
        )
    return model_dir


def model_view(model_dir: Path, folder: Path, decoding: Mapping[str, float] | None, static: Path | None) -> Path:
    """A view of `model_dir` in `folder` (links to its files) whose conf/model.conf sets `decoding` instead, and
    whose graph is the static one in `static` (HCLG.fst, words.txt) instead of the lookahead pair."""
    replaced = {"conf", "graph"} if static else {"conf"}
    for item in model_dir.iterdir():
        if item.name not in replaced:
            (folder / item.name).symlink_to(item.resolve())
    _link_folder(model_dir / "conf", folder / "conf", skip={"model.conf"})
    options = [line for line in (model_dir / "conf" / "model.conf").read_text().splitlines()
               if line.split("=", 1)[0].lstrip("-") not in (decoding or {})]
    options += [f"--{name}={value}" for name, value in (decoding or {}).items()]
    (folder / "conf" / "model.conf").write_text("\n".join(options) + "\n")
    if static:
        _link_folder(model_dir / "graph", folder / "graph", skip={"HCLr.fst", "Gr.fst"})
        _link_folder(static, folder / "graph", skip=set())
    return folder


def _link_folder(source: Path, target: Path, skip: set[str]) -> None:
    target.mkdir(exist_ok=True)
    for item in source.iterdir():
        if item.name not in skip:
            (target / item.name).symlink_to(item.resolve())


class VoskEngine:
    """A loaded Vosk model, shared by every leg's stream in the process; idle recognizers are kept for reuse."""

    def __init__(self, model: vosk.Model, model_dir: Path, *, static: bool = False) -> None:
        self.model = model
        self.model_dir = model_dir
        self.static = static
        """Decoding on the shared static graph: phrase hints (runtime grammars) are not available."""
        self._idle: dict[int, list[tuple[vosk.KaldiRecognizer, int]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: str | Path, decoding: Mapping[str, float] | None = DECODING, *,
             shared_graph: bool = True) -> VoskEngine:
        """Load the model (blocking, seconds) with `decoding`'s search limits (None: the model's own); once.
        `shared_graph`: decode every stream on the model's static graph (`voicebot models fetch` builds it);
        without it each recognizer expands its own from the lookahead pair (more CPU and memory), as phrase hints
        need."""
        model_dir = check_model_dir(Path(model_dir))
        vosk.SetLogLevel(-2)
        static = static_graph(model_dir) if shared_graph else None
        if shared_graph and static is None:
            log.warning("no static decoding graph in %s: each call expands its own (more CPU and memory); "
                        "run `voicebot models fetch` to build it", model_dir)
        if not decoding and not static:
            return cls(vosk.Model(str(model_dir)), model_dir)
        with tempfile.TemporaryDirectory() as tmp:  # Vosk reads every file while loading
            view = model_view(model_dir, Path(tmp), decoding, static)
            return cls(vosk.Model(str(view)), model_dir, static=static is not None)

    def knows(self, word: str) -> bool:
        """Whether the model's vocabulary holds `word`."""
        return self.model.vosk_model_find_word(word) >= 0

    def split_phrase(self, phrase: str) -> list[str]:
        """Split a phrase into vocabulary words by longest match; characters it lacks are dropped."""
        chars = re.sub(r"\s+", "", phrase)
        words: list[str] = []
        i = 0
        while i < len(chars):
            for size in range(min(MAX_WORD_CHARS, len(chars) - i), 0, -1):
                if self.knows(chars[i : i + size]):
                    words.append(chars[i : i + size])
                    i += size
                    break
            else:
                log.warning("phrase hint character outside the model vocabulary dropped (position %d)", i)
                i += 1
        return words

    def stream(self, sample_rate: int, phrases: list[str] | None = None, *, partials: bool = True) -> AsrStream:
        """A recognizer for one leg at 8 or 16 kHz, optionally restricted to phrase hints; `partials=False` gives
        only finals (offline work skips the partial results' cost)."""
        check_stream_rate(sample_rate)
        if phrases and self.static:
            raise ValueError("phrase hints need the model's lookahead graph: load the engine without shared_graph")
        if phrases:
            grammar = [" ".join(self.split_phrase(p)) for p in phrases]
            grammar = [g for g in grammar if g] + [UNKNOWN_WORD]
            recognizer = vosk.KaldiRecognizer(self.model, sample_rate, json.dumps(grammar, ensure_ascii=False))
            return AsrStream(_words_on(recognizer), sample_rate, partials=partials)
        with self._lock:
            idle = self._idle.get(sample_rate)
            recognizer, fed = idle.pop() if idle else (None, 0)
        if recognizer is None:
            recognizer = _words_on(vosk.KaldiRecognizer(self.model, sample_rate))
        return AsrStream(recognizer, sample_rate, fed=fed, release=self._keep, partials=partials)

    def _keep(self, recognizer: vosk.KaldiRecognizer, sample_rate: int, fed: int) -> None:
        """Take back a settled recognizer for a later call, unless enough are idle already."""
        with self._lock:
            idle = self._idle.setdefault(sample_rate, [])
            if len(idle) < POOL_SIZE:
                idle.append((recognizer, fed))


def _words_on(recognizer: vosk.KaldiRecognizer) -> vosk.KaldiRecognizer:
    recognizer.SetWords(True)
    recognizer.SetPartialWords(True)
    return recognizer


Release = Callable[[vosk.KaldiRecognizer, int, int], None]


class AsrStream:
    """One leg's recognizer: feed speech with its call time, get partial and final results."""

    def __init__(self, recognizer: vosk.KaldiRecognizer, sample_rate: int, *, fed: int = 0,
                 release: Release | None = None, partials: bool = True) -> None:
        self._rec: vosk.KaldiRecognizer | None = recognizer
        self.sample_rate = sample_rate
        self._fed = fed
        """Samples the recognizer has taken in its life: Vosk's word times count from its first call's start."""
        self._release = release
        self._partials = partials
        self._lock = threading.Lock()
        """Held while the recognizer decodes: closing waits for a decode still running in a worker thread."""
        self._fed_starts: list[float] = []
        self._call_starts: list[float] = []
        self._next_call_s: float | None = None
        self._since_partial_s = 0.0
        self._last_partial = ""
        self.audio_s = 0.0

    def accept(self, pcm: np.ndarray, start_s: float | None = None) -> list[AsrEvent]:
        """Feed int16 samples starting at call time `start_s` (default: right after the last ones)."""
        if start_s is None:
            start_s = self._next_call_s if self._next_call_s is not None else 0.0
        fed_s = self._fed / self.sample_rate
        if self._next_call_s is None or abs(start_s - self._next_call_s) > 1e-6:
            self._fed_starts.append(fed_s)
            self._call_starts.append(start_s)
        duration_s = len(pcm) / self.sample_rate
        self._fed += len(pcm)
        self._next_call_s = start_s + duration_s
        self.audio_s += duration_s
        with self._lock:
            if self._rec.AcceptWaveform(np.asarray(pcm, dtype="<i2").tobytes()):
                return self._final(self._rec.Result())
        self._since_partial_s += duration_s
        if self._since_partial_s < PARTIAL_INTERVAL_S or not self._partials:
            return []
        self._since_partial_s = 0.0
        with self._lock:
            return self._partial()

    def finish(self) -> list[AsrEvent]:
        """Settle the current utterance (speech ended, or the leg did); the stream stays usable."""
        with self._lock:
            return self._final(self._rec.FinalResult())

    def close(self) -> None:
        """Settle and hand the recognizer back for another call; the stream is unusable afterwards."""
        with self._lock:
            if self._rec is None:
                return
            recognizer, self._rec = self._rec, None
            if self._release is not None:
                recognizer.FinalResult()  # the next call starts a fresh utterance and feature pipeline
                self._release(recognizer, self.sample_rate, self._fed)

    def _call_time(self, fed_s: float) -> float:
        i = max(0, bisect.bisect_right(self._fed_starts, fed_s + 1e-9) - 1)
        if not self._fed_starts:
            return fed_s
        return round(self._call_starts[i] + fed_s - self._fed_starts[i], 3)

    def _words(self, items: list[dict]) -> tuple[Word, ...]:
        return tuple(
            Word(
                word=w["word"],
                start_s=self._call_time(w["start"]),
                end_s=self._call_time(w["end"]),
                conf=round(float(w.get("conf", 1.0)), 3),
            )
            for w in items
            if w["word"] != UNKNOWN_WORD
        )

    def _partial(self) -> list[AsrEvent]:
        result = json.loads(self._rec.PartialResult())
        words = self._words(result.get("partial_result", []))
        text = join_words([w.word for w in words])
        if not text or text == self._last_partial:
            return []
        self._last_partial = text
        return [AsrEvent(kind="partial", text=text, words=words)]

    def _final(self, raw: str) -> list[AsrEvent]:
        self._since_partial_s = 0.0
        self._last_partial = ""
        words = self._words(json.loads(raw).get("result", []))
        if not words:
            return []
        return [AsrEvent(kind="final", text=join_words([w.word for w in words]), words=words)]
