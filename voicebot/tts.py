"""Offline speech synthesis for the bot: engines behind one small interface, recorded prompts, and a prompt cache.

Everything the bot plays leaves `PromptCache.prompt()` as 8 kHz mono int16, the rate of a telephone line.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
import wave
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import soundfile

from asr.codecs import read_audio_file, resample

log = logging.getLogger(__name__)

PHONE_RATE = 8000
ESPEAK_BINARY = "espeak-ng"
ESPEAK_PACKAGE = "espeak-ng"
ESPEAK_VOICES = {"cmn": "cmn-latn-pinyin", "en": "en-us"}
"""espeak-ng voice per language. Plain `cmn` reads many characters as pinyin spelled in English; see DESIGN.md."""
LANGUAGE_ALIASES = {"zh": "cmn", "cmn": "cmn", "en": "en"}
"""Primary language subtags we accept (zh, zh-CN, cmn, en, en-US, …) and the language each one means."""
ESPEAK_TIMEOUT_S = 30.0
CACHE_FOLDER = "tts-cache"
PROMPTS_FOLDER = "prompts"
LINE_ID = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class TtsEngineMissingError(FileNotFoundError):
    """The speech engine's program is not installed."""


class SynthesisError(RuntimeError):
    """The engine ran but gave no usable audio."""


class PromptError(ValueError):
    """A prompt request that cannot be served: empty text, an unsupported language or a malformed line id."""


@runtime_checkable
class Synthesizer(Protocol):
    """A text-to-speech engine: text in one language to mono int16 samples at `sample_rate`."""

    name: str
    sample_rate: int

    def voice(self, language: str) -> str:
        """The voice and settings used for `language`; part of the prompt cache key."""
        ...

    def synthesize(self, text: str, language: str) -> np.ndarray:
        """Speak `text` in `language` (`cmn` or `en` from PromptCache); returns mono int16 samples at `sample_rate`."""
        ...


class PromptLine(NamedTuple):
    """A line the bot may say; `line_id` (`<script_id>/<line_id>`) lets a recorded prompt stand in for it."""

    text: str
    language: str
    line_id: str | None = None


def normalize_text(text: str) -> str:
    """The text as it is spoken and keyed: NFC, whitespace runs collapsed to one space, ends stripped."""
    return unicodedata.normalize("NFC", " ".join(text.split()))


def language_code(language: str) -> str:
    """Map a language tag (zh, zh-CN, cmn, en, en-US, …) to `cmn` or `en`; raise PromptError for others."""
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    if primary not in LANGUAGE_ALIASES:
        raise PromptError(f"unsupported prompt language {language!r}; use zh/cmn (Mandarin) or en (English)")
    return LANGUAGE_ALIASES[primary]


class EspeakSynthesizer:
    """Debian's espeak-ng (GPL), run as a subprocess so that no GPL code is linked; license-clean and always there."""

    sample_rate = 22050

    def __init__(self, *, speed_wpm: int = 175, pitch: int = 50, amplitude: int = 100,
                 binary: str = ESPEAK_BINARY) -> None:
        for setting, value, low, high in (("speed_wpm", speed_wpm, 80, 450), ("pitch", pitch, 0, 99),
                                          ("amplitude", amplitude, 0, 200)):
            if not low <= value <= high:
                raise PromptError(f"espeak-ng {setting} must be within {low}–{high}, not {value}")
        path = shutil.which(binary)
        if path is None:
            raise TtsEngineMissingError(f"{binary} not found; install the Debian package {ESPEAK_PACKAGE}: "
                                        f"sudo apt-get install -y {ESPEAK_PACKAGE}")
        self.binary = path
        self.speed_wpm, self.pitch, self.amplitude = speed_wpm, pitch, amplitude
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S)
        found = re.search(r"text-to-speech:\s*(\S+)", version.stdout)
        # The version is part of the name: a new espeak-ng release sounds different and must miss old cache entries.
        self.name = f"espeak-ng {found.group(1) if found else 'unknown'}"

    def voice(self, language: str) -> str:
        """The espeak-ng voice and its speed, pitch and amplitude for `language`."""
        return f"{ESPEAK_VOICES[language_code(language)]} s{self.speed_wpm} p{self.pitch} a{self.amplitude}"

    def synthesize(self, text: str, language: str) -> np.ndarray:
        """Speak `text` with espeak-ng; the text goes in on stdin (UTF-8), WAV comes back on stdout."""
        text = normalize_text(text)
        if not text:
            raise PromptError("nothing to say: the prompt text is empty")
        command = [self.binary, "-v", ESPEAK_VOICES[language_code(language)], "-s", str(self.speed_wpm),
                   "-p", str(self.pitch), "-a", str(self.amplitude), "-b", "1", "--stdout"]
        try:
            done = subprocess.run(command, input=text.encode("utf-8"), capture_output=True,
                                  timeout=ESPEAK_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as e:
            raise SynthesisError(f"espeak-ng took longer than {ESPEAK_TIMEOUT_S:.0f} s; check the installation") from e
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise SynthesisError(f"espeak-ng failed (exit {done.returncode}: {reason}); "
                                 f"check that the Debian package {ESPEAK_PACKAGE} and its voice data are installed")
        return self._decode(done.stdout)

    def _decode(self, wav: bytes) -> np.ndarray:
        try:
            data, rate = soundfile.read(io.BytesIO(wav), dtype="int16", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as e:
            raise SynthesisError("espeak-ng wrote no readable WAV; check the installation") from e
        if data.shape[0] == 0 or not np.any(data):
            raise SynthesisError("espeak-ng produced silence; check that the text holds speakable words")
        return resample(np.ascontiguousarray(data[:, 0]), rate, self.sample_rate)


class RecordedPrompts:
    """A deployment's own licensed voice: `<root>/<script_id>/<line_id>.wav` files, any rate, used when present.

    A `<line_id>.txt` beside a recording names what it says; if present, it must match the line's text.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, line_id: str) -> Path:
        """Where the recording of `line_id` would lie; raise PromptError for an id that is not a plain path."""
        if not LINE_ID.fullmatch(line_id):
            raise PromptError(f"malformed line id {line_id!r}; use <script_id>/<line_id> of letters, digits, _ and -")
        return self.root / f"{line_id}.wav"

    def get(self, line_id: str, text: str | None = None) -> np.ndarray | None:
        """The recording of `line_id` at 8 kHz, or None when there is none (or it says another text).

        A recording that cannot be read raises asr.codecs.AudioFormatError naming the file: `warm()` finds it first.
        """
        path = self.path(line_id)
        if not path.is_file():
            return None
        said = path.with_suffix(".txt")
        if text is not None and said.is_file() and normalize_text(said.read_text("utf-8")) != normalize_text(text):
            log.warning("recorded prompt %s is stale (its .txt differs from the script line); synthesising", line_id)
            return None
        audio = read_audio_file(path)
        mono = np.mean(np.stack(audio.channels), axis=0).astype(np.int16) if len(audio.channels) > 1 \
            else audio.channels[0]
        return resample(mono, audio.sample_rate, PHONE_RATE)


class PromptCache:
    """Serves every line at 8 kHz: a recorded prompt if there is one, else the cache, else the engine (then cached).

    Entries are 8 kHz 16-bit WAV files named by sha256(engine, voice, language, text), written atomically.
    """

    def __init__(self, synthesizer: Synthesizer, cache_dir: Path, *, recorded: RecordedPrompts | None = None) -> None:
        self.synthesizer = synthesizer
        self.cache_dir = Path(cache_dir)
        self.recorded = recorded

    def key(self, text: str, language: str) -> str:
        """The cache key of a line: sha256 over engine name, voice, language and normalised text."""
        code = language_code(language)
        fields = [self.synthesizer.name, self.synthesizer.voice(code), code, normalize_text(text)]
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode("utf-8")).hexdigest()

    def path(self, text: str, language: str) -> Path:
        """The cache file of a line (it may not exist yet)."""
        return self.cache_dir / f"{self.key(text, language)}.wav"

    def prompt(self, text: str, language: str, *, line_id: str | None = None, cache: bool = True) -> np.ndarray:
        """The line as 8 kHz mono int16 samples.

        Pass `cache=False` for lines filled with a debtor's details: they are spoken once and never stored.
        """
        if not normalize_text(text):
            raise PromptError("nothing to say: the prompt text is empty")
        if line_id is not None and self.recorded is not None:
            pcm = self.recorded.get(line_id, text)
            if pcm is not None:
                log.debug("prompt from recording, %d samples", len(pcm))
                return pcm
        if not cache:
            return self._synthesize(text, language)
        return self._cached(text, language)[0]

    def warm(self, lines: Iterable[PromptLine | tuple[str, str] | tuple[str, str, str | None]]) -> int:
        """Make sure every fixed line is ready before calls start; returns how many were synthesised now."""
        made = 0
        for line in lines:
            text, language, line_id = PromptLine(*line)
            if line_id is not None and self.recorded is not None and self.recorded.get(line_id, text) is not None:
                continue
            made += self._cached(text, language)[1]
        return made

    def _cached(self, text: str, language: str) -> tuple[np.ndarray, bool]:
        """The line from the cache, synthesised and stored first if missing or corrupt; True if synthesised now."""
        path = self.path(text, language)
        pcm = _read_entry(path)
        if pcm is not None:
            log.debug("prompt cache hit %s, %d samples", path.stem[:12], len(pcm))
            return pcm, False
        pcm = self._synthesize(text, language)
        _write_entry(path, pcm)
        log.debug("prompt cache miss %s, %d samples stored", path.stem[:12], len(pcm))
        return pcm, True

    def _synthesize(self, text: str, language: str) -> np.ndarray:
        pcm = self.synthesizer.synthesize(normalize_text(text), language_code(language))
        return resample(np.asarray(pcm, dtype=np.int16), self.synthesizer.sample_rate, PHONE_RATE)


def build_prompts(data_dir: Path, synthesizer: Synthesizer | None = None) -> PromptCache:
    """The deployment's prompts: recordings in `<data>/prompts/`, else `synthesizer` (espeak-ng), cached in
    `<data>/tts-cache/`."""
    return PromptCache(synthesizer or EspeakSynthesizer(), Path(data_dir) / CACHE_FOLDER,
                       recorded=RecordedPrompts(Path(data_dir) / PROMPTS_FOLDER))


def _read_entry(path: Path) -> np.ndarray | None:
    """A cache entry's samples, or None if it is missing or unusable (then it is synthesised again)."""
    try:
        with wave.open(str(path), "rb") as w:
            params = w.getparams()
            frames = w.readframes(params.nframes)
    except FileNotFoundError:
        return None
    except (OSError, EOFError, wave.Error) as e:
        log.warning("corrupt prompt cache entry %s (%s); synthesising again", path.stem[:12], type(e).__name__)
        return None
    if (params.nchannels, params.sampwidth, params.framerate) != (1, 2, PHONE_RATE) \
            or params.nframes == 0 or len(frames) != params.nframes * 2:
        log.warning("corrupt prompt cache entry %s (bad format or truncated); synthesising again", path.stem[:12])
        return None
    return np.frombuffer(frames, dtype="<i2").astype(np.int16)


def _write_entry(path: Path, pcm: np.ndarray) -> None:
    """Write a cache entry atomically: a temporary file in the same folder, flushed, then renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with wave.open(f, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(PHONE_RATE)
                w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["EspeakSynthesizer", "PromptCache", "PromptError", "PromptLine", "RecordedPrompts",
           "SynthesisError", "Synthesizer", "TtsEngineMissingError", "build_prompts", "language_code",
           "normalize_text"]
