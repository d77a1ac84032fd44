"""Diarization figures: model load, RTF and peak memory on a 60 s 8 kHz mono call, speech given to the right speaker.

Prints one JSON line per figure. Usage: python bench/diarize.py [--shared ../shared] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: this file's folder must not shadow the `asr` package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from asr.codecs import decode, encode, read_audio_file, resample
from asr.diarize import Diarizer, SpeakerTurn
from bench.figures import emit
from voicebot.config import load_config

RATE = 8000
CALL_S = 60.0


def phone_line(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Audio as a phone line carries it: 8 kHz through μ-law and back."""
    return decode(encode(resample(pcm, rate, RATE), "ulaw"), "ulaw")


def mono_call(shared: Path) -> tuple[np.ndarray, list[SpeakerTurn]]:
    """The first 60 s of two demo calls back to back, both legs mixed to one 8 kHz channel, with the true turns."""
    folder = shared / "audio" / "tts-cmn" / "calls"
    with (folder / "turns.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    pieces, truth, offset_s = [], [], 0.0
    for name in ("call_ptp", "call_agent_threat"):
        audio = read_audio_file(folder / f"{name}.wav")
        mixed = np.clip(audio.channels[0].astype(np.int32) + audio.channels[1], -32768, 32767).astype(np.int16)
        pieces.append(phone_line(mixed, audio.sample_rate))
        truth += [SpeakerTurn(offset_s + float(r["start_s"]), offset_s + float(r["end_s"]), r["leg"])
                  for r in rows if r["call"] == name]
        offset_s += len(pieces[-1]) / RATE
    pcm = np.concatenate(pieces)[: round(CALL_S * RATE)]
    return pcm, [SpeakerTurn(t.start_s, min(t.end_s, CALL_S), t.speaker) for t in truth if t.start_s < CALL_S]


def real_voices(shared: Path) -> tuple[np.ndarray, list[SpeakerTurn]]:
    """Two real livestream hosts taking 3 s turns with 0.5 s gaps at 8 kHz μ-law, with the true turns."""
    folder = shared / "audio" / "real-cmn"
    voices = [(name, phone_line(audio.channels[0], audio.sample_rate))
              for name, audio in (("A", read_audio_file(folder / "cmn_15_livestream_spk1.wav")),
                                  ("B", read_audio_file(folder / "cmn_16_livestream_spk2.wav")))]
    gap = np.zeros(RATE // 2, np.int16)
    pieces, truth, at_s = [gap], [], 0.5
    for k in range(0, max(len(pcm) for _, pcm in voices), 3 * RATE):
        for name, pcm in voices:
            piece = pcm[k : k + 3 * RATE]
            if len(piece):
                truth.append(SpeakerTurn(at_s, at_s + len(piece) / RATE, name))
                pieces += [piece, gap]
                at_s += len(piece) / RATE + 0.5
    return np.concatenate(pieces), truth


def right_speaker_share(turns: list[SpeakerTurn], truth: list[SpeakerTurn]) -> float:
    """Share of the true speech time given to the right speaker, each label mapped to its most-overlapped speaker."""
    def overlap(a: SpeakerTurn, b: SpeakerTurn) -> float:
        return max(0.0, min(a.end_s, b.end_s) - max(a.start_s, b.start_s))

    speakers = {t.speaker for t in truth}
    mapping = {label: max(speakers, key=lambda s: sum(overlap(h, t) for h in turns if h.speaker == label
                                                      for t in truth if t.speaker == s))
               for label in {t.speaker for t in turns}}
    right = sum(overlap(h, t) for h in turns for t in truth if mapping[h.speaker] == t.speaker)
    return right / sum(t.end_s - t.start_s for t in truth)


def bench_call(diarizer: Diarizer, pcm: np.ndarray, truth: list[SpeakerTurn], label: str, runs: int) -> None:
    """RTF (CPU and wall) of the first and later runs, and the share of speech given to the right speaker."""
    audio_s = len(pcm) / RATE
    cpu, wall = [], []
    for _ in range(runs):
        started_cpu, started = time.process_time(), time.monotonic()
        turns = diarizer.turns(pcm, RATE)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.monotonic() - started)
    emit("rtf_first_run", cpu[0] / audio_s, "x", input=label, audio_s=round(audio_s, 1),
         wall=round(wall[0] / audio_s, 4))
    if runs > 1:
        emit("rtf", statistics.median(cpu[1:]) / audio_s, "x", input=label, audio_s=round(audio_s, 1),
             wall=round(statistics.median(wall[1:]) / audio_s, 4))
    emit("right_speaker_share", right_speaker_share(turns, truth), "ratio", input=label, num_speakers=2)


def main() -> None:
    """Run every diarization figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=None, help="the shared/ folder")
    parser.add_argument("--runs", type=int, default=3, help="diarization runs per input (the first one warms up)")
    args = parser.parse_args()
    config = load_config(shared_dir=args.shared)
    started = time.monotonic()
    diarizer = Diarizer.load(config.models_dir)
    emit("model_load", time.monotonic() - started, "s")
    emit("rss_after_load", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")
    pcm, truth = mono_call(config.shared_dir)
    bench_call(diarizer, pcm, truth, "tts-cmn calls mixed to mono, 8k μ-law", args.runs)
    pcm, truth = real_voices(config.shared_dir)
    bench_call(diarizer, pcm, truth, "real-cmn cmn_15/cmn_16 alternating, 8k μ-law", args.runs)
    emit("peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")


if __name__ == "__main__":
    main()
