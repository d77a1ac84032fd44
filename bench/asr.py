"""ASR figures: CER on real-cmn, RTF per stream with and without VAD, concurrent real-time 8 kHz legs, memory.

Prints one JSON line per figure. Usage: python bench/asr.py [--shared ../shared] [--paced-s 20]
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: this file's folder must not shadow the `asr` package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from asr.codecs import decode, encode, read_audio_file, resample
from asr.metrics import character_error_rate
from asr.transcribe import leg_events, transcribe_audio
from asr.vad import SpeechChunk, VoiceGate
from asr.vosk_engine import VoskEngine
from bench.figures import emit
from voicebot.config import load_config

FRAME_MS = 20
STAGGER_S = 5.0


def bench_cer_and_rtf(engine: VoskEngine, shared: Path) -> None:
    """CER and single-stream RTF on real speech, with and without the VAD gate."""
    folder = shared / "audio" / "real-cmn"
    rows = list(csv.reader((folder / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t"))
    audios = [read_audio_file(folder / row[0]) for row in rows]
    total_s = sum(a.duration_s for a in audios)
    for vad in (True, False):
        started = time.process_time()
        hyps = [transcribe_audio(engine, a, vad=vad)[0].text for a in audios]
        cpu_s = time.process_time() - started
        label = "vad" if vad else "no-vad"
        emit("cer", character_error_rate([r[1] for r in rows], hyps), "ratio", input="real-cmn", vad=label)
        emit("rtf", cpu_s / total_s, "x", input="real-cmn", vad=label, audio_s=round(total_s, 1))


def call_legs_8k(shared: Path) -> list[np.ndarray]:
    """The demo calls' legs as a phone line carries them: 8 kHz through μ-law and back."""
    legs = []
    for path in sorted((shared / "audio" / "tts-cmn" / "calls").glob("*.wav")):
        audio = read_audio_file(path)
        for channel in audio.channels:
            legs.append(decode(encode(resample(channel, audio.sample_rate, 8000), "ulaw"), "ulaw"))
    return legs


def bench_call_rtf(engine: VoskEngine, legs: list[np.ndarray]) -> None:
    """Single-stream RTF on call legs (each silent over half the time), with and without VAD."""
    total_s = sum(len(leg) for leg in legs) / 8000
    gate_silence = []
    for vad in (True, False):
        started = time.process_time()
        for leg in legs:
            for _ in leg_events(engine, leg, 8000, vad=vad):
                pass
        emit("rtf", (time.process_time() - started) / total_s, "x", input="tts-cmn calls 8k μ-law",
             vad="vad" if vad else "no-vad", audio_s=round(total_s, 1))
    for leg in legs:
        gate = VoiceGate(8000)
        passed = sum(len(e.pcm) for e in gate.accept(leg) + gate.finish() if isinstance(e, SpeechChunk))
        gate_silence.append(1 - passed / len(leg))
    emit("vad_dropped", float(np.mean(gate_silence)), "ratio", input="tts-cmn calls 8k μ-law")


def run_paced(engine: VoskEngine, legs: list[np.ndarray], n: int, seconds: float) -> float:
    """Run `n` legs at once, fed 20 ms frames in real time, starting over 5 s; return the worst lag."""
    step = 8000 * FRAME_MS // 1000
    lags = [0.0] * n
    begin = time.monotonic() + 0.5

    def leg_worker(i: int) -> None:
        start = begin + STAGGER_S * i / n
        pcm = np.roll(legs[i % len(legs)], i * 997)
        pcm = np.tile(pcm, int(seconds * 8000 // len(pcm)) + 1)[: int(seconds * 8000)]
        stream, gate = engine.stream(8000), VoiceGate(8000)
        for k in range(0, len(pcm), step):
            due = start + k / 8000
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for event in gate.accept(pcm[k : k + step]):
                if isinstance(event, SpeechChunk):
                    stream.accept(event.pcm, event.start_s)
                else:
                    stream.finish()
            lags[i] = max(lags[i], time.monotonic() - (due + FRAME_MS / 1000))

    threads = [threading.Thread(target=leg_worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(lags)


def bench_concurrency(engine: VoskEngine, legs: list[np.ndarray], seconds: float) -> None:
    """The most 8 kHz legs one process keeps in real time (worst lag under 1 s)."""
    best, n, max_lag = 0, 4, 0.0
    while True:
        lag = run_paced(engine, legs, n, seconds)
        emit("paced_run_worst_lag", lag, "s", legs=n, seconds=seconds)
        if lag >= 1.0:
            break
        best, max_lag = n, lag
        n = int(n * 1.25) + 1
    emit("concurrent_realtime_legs", best, "legs", input="tts-cmn calls 8k μ-law", worst_lag_s=round(max_lag, 3))


def main() -> None:
    """Run every ASR figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=None, help="the shared/ folder")
    parser.add_argument("--paced-s", type=float, default=20.0, help="length of each concurrency trial")
    args = parser.parse_args()
    config = load_config(shared_dir=args.shared)
    started = time.monotonic()
    engine = VoskEngine.load(config.vosk_model)
    emit("model_load", time.monotonic() - started, "s")
    emit("rss_after_load", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")
    bench_cer_and_rtf(engine, config.shared_dir)
    legs = call_legs_8k(config.shared_dir)
    bench_call_rtf(engine, legs)
    bench_concurrency(engine, legs, args.paced_s)
    emit("peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")


if __name__ == "__main__":
    main()
