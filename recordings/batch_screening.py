"""Screening every recording: claims in the `screenings` table, local worker processes by default, Ray on request.

A recording is claimed before it is screened, so a run resumes where a stopped one left off and never screens a call
twice; workers send results back and this process alone writes them to SQLite.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from asr.vosk_engine import ModelMissingError, VoskEngine, check_model_dir
from asr.whisper_engine import WhisperEngine
from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import RuleEngine
from compliance_rules.pack import RulePackError, load_pack
from recordings.keys import RecordingKeyError
from recordings.screening import (
    DEFAULT_PACK,
    Cues,
    Screening,
    ScreeningError,
    create_tables,
    save_screening,
    screen_audio,
)
from recordings.sealed import RecordingTamperedError
from recordings.store import RecordingNotFound, RecordingStore, stamp
from voicebot.sql import Target

log = logging.getLogger(__name__)

CLAIM_TIMEOUT_S = 3600.0
"""A claim older than this is taken to be a stopped run's and may be claimed again."""
MAX_ATTEMPTS = 3
"""A recording that failed this many times is left failed, for a person to look at."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenModels:
    """What every screening worker loads: the Vosk (Mandarin) and Whisper (English) model folders, and the rule pack
    (bundled name or file) for recordings that name none."""

    vosk_model: Path
    pack: str = DEFAULT_PACK
    whisper_model: Path | None = None

    @classmethod
    def of(cls, config: HasModelFolders, pack: str = DEFAULT_PACK) -> ScreenModels:
        """The model folders settings name, such as voicebot's Config."""
        return cls(vosk_model=Path(config.vosk_model), pack=pack, whisper_model=Path(config.whisper_model))


class HasModelFolders(Protocol):
    """Settings naming the model folders, such as voicebot's Config."""

    @property
    def vosk_model(self) -> Path: ...

    @property
    def whisper_model(self) -> Path: ...


@dataclass(frozen=True, slots=True)
class StorePaths:
    """Where a worker opens the store itself: database, recording folder and key file (shared storage on Ray)."""

    db: Target
    folder: Path
    keys: Path
    retention_days: int

    @classmethod
    def of(cls, store: RecordingStore) -> StorePaths:
        """The paths of an open store (its database a SQLite file, or the URL of a shared one)."""
        return cls(store.target, store.folder, store.ring.path, store.retention.days)

    def open(self) -> RecordingStore:
        """Open the store these paths name."""
        return RecordingStore.open(self.db, self.folder, key_path=self.keys, retention_days=self.retention_days)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenOutcome:
    """One recording's result as a worker sends it back: its screening, or why it failed."""

    recording_id: str
    screening: Screening | None = None
    error: str | None = None
    audio_s: float = 0.0
    seconds: float = 0.0
    worker: str = ""

    def summary(self) -> dict[str, Any]:
        """A line for logs and the CLI: id, status, score and flag count, or the error; never the transcript."""
        if self.screening is None:
            return {"recording_id": self.recording_id, "status": "failed", "error": self.error}
        return {"recording_id": self.recording_id, "status": "done", "score": self.screening.score,
                "flags": len(self.screening.flags), "audio_s": round(self.audio_s, 2),
                "seconds": round(self.seconds, 2)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenReport:
    """What one run did: each recording's outcome, where it ran, and how long it took."""

    outcomes: list[ScreenOutcome]
    engine: Literal["process-pool", "ray"]
    workers: int
    wall_s: float

    @property
    def screened(self) -> list[ScreenOutcome]:
        """The recordings screened in this run."""
        return [o for o in self.outcomes if o.screening is not None]

    @property
    def failed(self) -> list[ScreenOutcome]:
        """The recordings that failed in this run."""
        return [o for o in self.outcomes if o.screening is None]

    def summary(self) -> dict[str, Any]:
        """Counts, audio hours and wall time of the run."""
        audio_s = sum(o.audio_s for o in self.screened)
        return {"screened": len(self.screened), "failed": len(self.failed), "audio_s": round(audio_s, 1),
                "wall_s": round(self.wall_s, 1), "engine": self.engine, "workers": self.workers}


def error_text(error: BaseException) -> str:
    """How a failure is kept: our errors by type and message (they say what to do), any other by type alone."""
    clear = (RecordingTamperedError, RecordingKeyError, RecordingNotFound, ModelMissingError, RulePackError,
             ScreeningError)
    return f"{type(error).__name__}: {error}" if isinstance(error, clear) else type(error).__name__


@dataclass(frozen=True, slots=True)
class PackTools:
    """How recordings judged by one pack are screened: the recognizer for its language, its compiled rules and
    cues, and the semantic model."""

    asr: VoskEngine | WhisperEngine
    rules: RuleEngine
    cues: Cues
    meaning: SemanticDetector


class Screener:
    """A worker's loaded parts: its own connection to the store, and each pack's tools, loaded when a recording
    first needs them (a recording is screened with the pack and language its live call had)."""

    def __init__(self, paths: StorePaths, models: ScreenModels) -> None:
        self.store = paths.open()
        self.models = models
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._tools: dict[str, PackTools] = {}
        self._recognizers: dict[str, VoskEngine | WhisperEngine] = {}

    def tools(self, pack_name: str | None) -> PackTools:
        """The tools for a pack (None: the run's default pack)."""
        name = pack_name or self.models.pack
        if name not in self._tools:
            rules = RuleEngine.from_pack(name)
            self._tools[name] = PackTools(self._recognizer(rules.pack.language), rules, Cues.for_pack(rules),
                                          SemanticDetector.for_pack(rules.pack))
        return self._tools[name]

    def _recognizer(self, language: str) -> VoskEngine | WhisperEngine:
        if language not in self._recognizers:
            if language != "en":
                self._recognizers[language] = VoskEngine.load(self.models.vosk_model)
            elif self.models.whisper_model is None:
                raise ModelMissingError("no English model was given; run `voicebot models fetch`")
            else:
                self._recognizers[language] = WhisperEngine.load(self.models.whisper_model)
        return self._recognizers[language]

    def screen(self, recording_id: str) -> ScreenOutcome:
        """Screen one recording; an error comes back as a failed outcome, never raised."""
        started = time.monotonic()
        try:
            recording = self.store.get(recording_id)
            tools = self.tools(recording.pack)
            opened = self.store.open_audio(recording_id)
            screening = screen_audio(recording, opened, tools.asr, tools.rules, tools.cues,
                                     self.store.agent_lines(recording_id), tools.meaning)
        except Exception as e:
            return ScreenOutcome(recording_id=recording_id, error=error_text(e), worker=self.worker,
                                 seconds=time.monotonic() - started)
        return ScreenOutcome(recording_id=recording_id, screening=screening, audio_s=opened.duration_s,
                             worker=self.worker, seconds=time.monotonic() - started)


def _claim_stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def pending(store: RecordingStore, *, limit: int | None = None, claim_timeout_s: float = CLAIM_TIMEOUT_S,
            max_attempts: int = MAX_ATTEMPTS) -> list[str]:
    """Finished recordings to screen, oldest first: never claimed, failed fewer than `max_attempts` times, or claimed
    by a run that stopped (a claim older than `claim_timeout_s`)."""
    create_tables(store)
    stale = _claim_stamp(datetime.now(UTC) - timedelta(seconds=claim_timeout_s))
    rows = store.query(
        "SELECT r.recording_id FROM recordings r LEFT JOIN screenings s ON s.recording_id = r.recording_id "
        "WHERE r.status IN ('complete', 'incomplete') AND (s.recording_id IS NULL OR (s.attempts < ? AND "
        "(s.status = 'failed' OR (s.status = 'claimed' AND s.claimed_at < ?)))) "
        "ORDER BY r.started_at, r.recording_id" + (" LIMIT ?" if limit is not None else ""),
        [max_attempts, stale, *([limit] if limit is not None else [])])
    return [row["recording_id"] for row in rows]


def claim(store: RecordingStore, recording_id: str, worker: str, *, claim_timeout_s: float = CLAIM_TIMEOUT_S,
          max_attempts: int = MAX_ATTEMPTS) -> bool:
    """Claim a recording in one statement; False if it is done, failed too often, or claimed by a live run."""
    now = datetime.now(UTC)
    return store.execute(
        "INSERT INTO screenings (recording_id, status, worker, claimed_at, attempts) VALUES (?, 'claimed', ?, ?, 1) "
        "ON CONFLICT (recording_id) DO UPDATE SET status = 'claimed', worker = excluded.worker, "
        "claimed_at = excluded.claimed_at, attempts = screenings.attempts + 1, error = NULL "
        "WHERE screenings.attempts < ? AND (screenings.status = 'failed' OR "
        "(screenings.status = 'claimed' AND screenings.claimed_at < ?))",
        [recording_id, worker, _claim_stamp(now), max_attempts,
         _claim_stamp(now - timedelta(seconds=claim_timeout_s))]) == 1


def record_outcome(store: RecordingStore, outcome: ScreenOutcome) -> None:
    """Save a worker's result: the screening, or the failure and its reason (retried by a later run)."""
    if outcome.screening is not None:
        save_screening(store, outcome.screening)
        log.info("screened %s: score %s, %d flags", outcome.recording_id, outcome.screening.score,
                 len(outcome.screening.flags))
        return
    store.execute("UPDATE screenings SET status = 'failed', error = ?, finished_at = ? WHERE recording_id = ?",
                  [outcome.error, stamp(datetime.now(UTC)), outcome.recording_id])
    log.warning("screening %s failed (%s)", outcome.recording_id, (outcome.error or "").split(":")[0])


def screen_pending(store: RecordingStore, models: ScreenModels | HasModelFolders, *, workers: int | None = None,
                   ray_address: str | None = None, limit: int | None = None,
                   claim_timeout_s: float = CLAIM_TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS,
                   progress: Callable[[ScreenOutcome], None] | None = None) -> ScreenReport:
    """Screen every complete or incomplete recording that has no finished screening, each exactly once.

    Local worker processes by default (one per core unless `workers`), or Ray actors at `ray_address` ("auto",
    "ray://host:10001", "local"), whose nodes must see the store's database, folder and key file at the same paths.
    `progress` is called with each outcome once it is saved.
    """
    if not isinstance(models, ScreenModels):
        models = ScreenModels.of(models)
    check_model_dir(models.vosk_model)
    load_pack(models.pack)  # a bad model folder or pack is reported here, not by every worker
    started = time.monotonic()
    engine: Literal["process-pool", "ray"] = "ray" if ray_address else "process-pool"
    todo = pending(store, limit=limit, claim_timeout_s=claim_timeout_s, max_attempts=max_attempts)
    if not todo:
        return ScreenReport(outcomes=[], engine=engine, workers=0, wall_s=time.monotonic() - started)
    paths = StorePaths.of(store)
    if ray_address:
        runner: _Runner = _RayRunner(ray_address, paths, models, workers)
    else:
        runner = _PoolRunner(paths, models, min(workers or os.cpu_count() or 1, len(todo)))
    claimant = f"{socket.gethostname()}:{os.getpid()}"
    claims = (rid for rid in todo if runner.healthy and claim(store, rid, claimant, claim_timeout_s=claim_timeout_s,
                                                              max_attempts=max_attempts))
    try:
        outcomes = _drive(store, runner, claims, progress)
    finally:
        runner.close()
    return ScreenReport(outcomes=outcomes, engine=engine, workers=runner.workers, wall_s=time.monotonic() - started)


def _drive(store: RecordingStore, runner: _Runner, claims: Iterator[str],
           progress: Callable[[ScreenOutcome], None] | None) -> list[ScreenOutcome]:
    """Keep every worker busy with claimed recordings (two each in flight) and save each result as it comes."""
    outcomes: list[ScreenOutcome] = []
    in_flight = 0
    for recording_id in itertools.islice(claims, 2 * runner.workers):
        runner.submit(recording_id)
        in_flight += 1
    while in_flight:
        outcome = runner.next_outcome()
        in_flight -= 1
        record_outcome(store, outcome)
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
        if (recording_id := next(claims, None)) is not None:
            runner.submit(recording_id)
            in_flight += 1
    return outcomes


class _Runner(Protocol):
    workers: int
    healthy: bool

    def submit(self, recording_id: str) -> None: ...

    def next_outcome(self) -> ScreenOutcome: ...

    def close(self) -> None: ...


_worker: Screener | None = None


def _start_worker(paths: StorePaths, models: ScreenModels) -> None:
    global _worker
    _worker = Screener(paths, models)


def _screen_in_worker(recording_id: str) -> ScreenOutcome:
    assert _worker is not None, "the pool's initializer loads the screener"
    return _worker.screen(recording_id)


class _PoolRunner:
    """Local worker processes (spawned, not forked), each loading the model and the pack once."""

    def __init__(self, paths: StorePaths, models: ScreenModels, workers: int) -> None:
        self.workers, self.healthy = workers, True
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker, initargs=(paths, models))
        self._futures: dict[Future[ScreenOutcome], str] = {}

    def submit(self, recording_id: str) -> None:
        self._futures[self._pool.submit(_screen_in_worker, recording_id)] = recording_id

    def next_outcome(self) -> ScreenOutcome:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = done.pop()
        recording_id = self._futures.pop(future)
        try:
            return future.result()
        except BrokenProcessPool:
            self.healthy = False  # no more claims this run; the in-flight ones fail and are retried next run
            return ScreenOutcome(recording_id=recording_id, error="BrokenProcessPool: a screening worker died")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _RayRunner:
    """Ray actors, one per CPU of the cluster unless told, each loading the model and the pack once."""

    def __init__(self, address: str, paths: StorePaths, models: ScreenModels, workers: int | None) -> None:
        try:
            import ray
        except ImportError:
            raise ScreeningError("Ray is not installed; pip install 'voicebot[cluster]', or screen without --ray") \
                from None
        self._ray, self.healthy = ray, True
        self._owned = not ray.is_initialized()
        if self._owned:
            unreachable = ScreeningError(f"cannot reach a Ray cluster at {address}; start one with `ray start "
                                         "--head`, or screen without --ray")
            if not _answers(address):
                raise unreachable  # Ray itself would retry for many minutes
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError):
                raise unreachable from None
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(Screener)
        self._actors = [actor.remote(paths, models) for _ in range(self.workers)]
        self._load = [0] * self.workers
        self._tasks: dict[Any, tuple[str, int]] = {}

    def submit(self, recording_id: str) -> None:
        index = self._load.index(min(self._load))
        self._tasks[self._actors[index].screen.remote(recording_id)] = (recording_id, index)
        self._load[index] += 1

    def next_outcome(self) -> ScreenOutcome:
        [ref], _ = self._ray.wait(list(self._tasks), num_returns=1)
        recording_id, index = self._tasks.pop(ref)
        self._load[index] -= 1
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as e:
            return ScreenOutcome(recording_id=recording_id, error=type(e).__name__)

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        if self._owned:
            self._ray.shutdown()


def _answers(address: str, timeout_s: float = 5.0) -> bool:
    """Whether a `host:port` or `ray://host:port` address accepts connections; other forms (auto, local) pass."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return True
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False
    return True
