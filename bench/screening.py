"""Screening throughput: hours of audio screened per hour of wall time through the default process pool, and memory.

Seals N recordings (the three stereo demo calls in turn) into a fresh store, as a live call writes them, then runs
`screen_pending` with its defaults (one worker process per core) and prints one JSON line per figure. At 8000 Hz the
calls go through μ-law first, as a phone line carries them; at 16000 Hz they are screened as synthesized.

A day's screening is hundreds of recordings: the default 48 (29 minutes of audio) is enough for the workers' start
(loading the models, and each recognizer expanding its decoding graph on its first calls, ~2x) to stop dominating;
`--recordings 12` shows that start (16.5 h/h at 8 kHz against 26 once warm).

Usage: python bench/screening.py [--recordings 48] [--rates 8000,16000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: this file's folder must not shadow the project's packages
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from asr.codecs import decode, encode, read_audio_file, resample
from bench.figures import emit
from recordings.batch_screening import ScreenModels, screen_pending
from recordings.store import LEGS, RecordingStore
from voicebot.config import load_config

CALLS = ("call_ptp", "call_dispute", "call_agent_threat")
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def call_legs(shared: Path, rate: int) -> list[list[np.ndarray]]:
    """Each demo call's agent and customer legs at `rate` (8 kHz through μ-law and back)."""
    calls = []
    for name in CALLS:
        audio = read_audio_file(shared / "audio" / "tts-cmn" / "calls" / f"{name}.wav")
        legs = [resample(c, audio.sample_rate, rate) for c in audio.channels]
        calls.append([decode(encode(leg, "ulaw"), "ulaw") for leg in legs] if rate == 8000 else legs)
    return calls


def seal(store: RecordingStore, recording_id: str, legs: list[np.ndarray], rate: int, started_at: datetime) -> None:
    """Write one call into the store as a live call does: 20 ms pieces, the legs alternating."""
    store.register(recording_id, started_at=started_at, agent_id="bench", adapter="bench")
    writer = store.writer(recording_id, started_at)
    piece = rate // 50
    for at in range(0, len(legs[0]), piece):
        for leg, pcm in zip(LEGS, legs, strict=True):
            writer.write(leg, pcm[at:at + piece], rate)
    writer.close()
    store.finish(recording_id, ended_at=started_at + timedelta(seconds=writer.duration_s),
                 duration_s=writer.duration_s, sample_rate=rate)


def tree_rss_mib(root: int) -> float:
    """Resident memory of a process and all its descendants, now."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total_kib = 0
    for pid in tree:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total_kib += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total_kib / 1024


class PeakSampler(threading.Thread):
    """Samples the memory of this process and its workers every 0.2 s; keeps the peak of the sum."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mib = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            self.peak_mib = max(self.peak_mib, tree_rss_mib(os.getpid()))

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_mib


def bench_rate(shared: Path, models: ScreenModels, recordings: int, rate: int, workers: int | None) -> None:
    """Seal the recordings at one rate, screen them all, print the figures."""
    calls = call_legs(shared, rate)
    with tempfile.TemporaryDirectory() as tmp, RecordingStore.open(Path(tmp) / "voicebot.db",
                                                                   Path(tmp) / "recordings") as store:
        for i in range(recordings):
            seal(store, f"bench-{i:03d}", calls[i % len(calls)], rate, START + timedelta(minutes=i))
        sampler = PeakSampler()
        sampler.start()
        report = screen_pending(store, models, workers=workers)
        peak = sampler.stop()
    audio_s = report.summary()["audio_s"]
    tags = {"input": f"tts-cmn demo calls, stereo {rate} Hz", "recordings": recordings, "workers": report.workers,
            "audio_s": audio_s, "wall_s": round(report.wall_s, 1)}
    emit("screening_throughput", audio_s / report.wall_s, "audio h per wall h", **tags)
    emit("screening_per_recording_mean", statistics.mean(o.seconds for o in report.screened), "s", **tags)
    emit("screening_worker_rtf", sum(o.seconds for o in report.screened) / audio_s, "x", **tags)
    emit("screening_failed", len(report.failed), "recordings", **tags)
    emit("screening_peak_rss_total", peak, "MiB", what="parent + worker processes, sampled every 0.2 s", **tags)
    emit("screening_peak_rss_worker", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "MiB",
         what="largest worker process so far", rate=rate)


def main() -> None:
    """Run the screening figures at each rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=48, help="how many recordings to seal and screen")
    parser.add_argument("--rates", default="8000,16000", help="sample rates to seal the calls at")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    args = parser.parse_args()
    config = load_config()
    models = ScreenModels(vosk_model=config.vosk_model)
    for rate in (int(r) for r in args.rates.split(",")):
        bench_rate(config.shared_dir, models, args.recordings, rate, args.workers)
    emit("screening_peak_rss_parent", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")


if __name__ == "__main__":
    main()
