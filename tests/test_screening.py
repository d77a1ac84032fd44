"""Automatic screening: real sealed recordings of the demo calls, the real Vosk model, worker processes and Ray."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from live_peers import free_port

from asr.codecs import read_audio_file
from asr.vosk_engine import AsrEvent, Word
from compliance_rules.engine import RuleEngine
from recordings.batch_screening import MAX_ATTEMPTS, ScreenModels, claim, pending, screen_pending
from recordings.screening import (
    SCORECARD,
    Cues,
    Heard,
    ScreeningError,
    check_call,
    create_tables,
    fill_scorecard,
    load_screening,
    merge_flags,
    screen_recording,
)
from recordings.store import LEGS, RecordingStore
from voicebot.config import Config

START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CJK = re.compile(r"[\u3400-\u9fff]")


@pytest.fixture
def store(tmp_path: Path):
    with RecordingStore.open(tmp_path / "voicebot.db", tmp_path / "recordings") as s:
        yield s


@pytest.fixture
def models(config: Config) -> ScreenModels:
    return ScreenModels(vosk_model=config.vosk_model)


def store_call(store: RecordingStore, shared: Path, call: str, recording_id: str | None = None, *,
               minutes: int = 0, flags: tuple[dict, ...] = ()) -> str:
    """Write a stereo demo call into the store as a live call would: 20 ms pieces, legs alternating."""
    recording_id = recording_id or call
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "calls" / f"{call}.wav")
    started_at = START + timedelta(minutes=minutes)
    store.register(recording_id, started_at=started_at, agent_id="agent-7", adapter="test")
    writer = store.writer(recording_id, started_at)
    piece = audio.sample_rate // 50
    for at in range(0, len(audio.channels[0]), piece):
        for leg, pcm in zip(LEGS, audio.channels, strict=True):
            writer.write(leg, pcm[at:at + piece], audio.sample_rate)
    writer.close()
    store.finish(recording_id, ended_at=started_at + timedelta(seconds=writer.duration_s),
                 duration_s=writer.duration_s, sample_rate=writer.sample_rate, flags=list(flags))
    return recording_id


def finished(store: RecordingStore) -> dict[str, str]:
    return {r["recording_id"]: r["finished_at"]
            for r in store.query("SELECT recording_id, finished_at FROM screenings WHERE status = 'done'")}


CALLS = [
    # what each demo call's audio really says (turns.tsv), and how its scorecard must come out
    ("call_ptp", {"identity_before_disclosure": "pass", "required_disclosures": "pass",
                  "no_prohibited_language": "pass", "dispute_handled": "n/a", "politeness": "pass"}),
    ("call_dispute", {"identity_before_disclosure": "pass", "required_disclosures": "pass",
                      "no_prohibited_language": "pass", "dispute_handled": "pass", "politeness": "pass"}),
    ("call_agent_threat", {"identity_before_disclosure": "fail", "required_disclosures": "fail",
                           "no_prohibited_language": "fail", "dispute_handled": "n/a", "politeness": "pass"}),
]


@pytest.mark.model
@pytest.mark.parametrize(("call", "marks"), CALLS, ids=[c for c, _ in CALLS])
def test_a_demo_call_is_scored_as_its_audio_says(store: RecordingStore, shared: Path, engine, cn_rules, call: str,
                                                 marks: dict[str, str]) -> None:
    store_call(store, shared, call)
    screening = screen_recording(store, call, engine, cn_rules)
    assert {k: v.mark for k, v in screening.scorecard.items()} == marks
    assert list(screening.scorecard) == list(SCORECARD)
    assert {u.leg for u in screening.transcript} == {"agent", "customer"}
    assert [u.start_s for u in screening.transcript] == sorted(u.start_s for u in screening.transcript)
    assert not any(CJK.search(item.why) for item in screening.scorecard.values()), "a reason quotes the call"
    assert all(set(f) == {"leg", "rule", "category", "severity", "start_s", "end_s", "source"}
               for f in screening.flags)
    assert screening.score == pytest.approx(100 * sum(m == "pass" for m in marks.values())
                                            / sum(m != "n/a" for m in marks.values()), abs=0.1)


@pytest.mark.model
def test_the_agents_threat_is_a_gang_flag_in_time_and_joins_the_live_flags(store: RecordingStore, shared: Path,
                                                                            engine, cn_rules) -> None:
    live = {"leg": "agent", "rule": "cn.harassment.calls", "category": "harassment", "severity": "high",
            "start_s": 3.0, "end_s": 4.0}
    store_call(store, shared, "call_agent_threat", flags=(live,))
    screening = screen_recording(store, "call_agent_threat", engine, cn_rules)
    threat = [f for f in screening.flags if f["category"] in ("gang", "threat")]
    assert threat and all(f["leg"] == "agent" and f["source"] == "screen" for f in threat)
    assert all(19.0 <= f["start_s"] <= 22.1 for f in threat)  # a08 is spoken from 19.2 s to 22.0 s
    assert {**live, "source": "live"} in screening.flags
    why = screening.scorecard["no_prohibited_language"].why
    assert "gang" in why and "harassment" in why
    assert screening.scorecard["identity_before_disclosure"].why.startswith("the debt came up before identity")


def test_a_live_flag_and_the_screened_one_for_the_same_words_are_one_finding() -> None:
    live = [{"leg": "agent", "rule": "cn.threat.gang", "category": "gang", "severity": "critical",
             "start_s": 19.9, "end_s": 21.2}]
    screened = [{**live[0], "start_s": 20.4, "source": "screen"},
                {**live[0], "start_s": 30.0, "end_s": 31.0, "source": "screen"},
                {**live[0], "leg": "customer", "source": "screen"}]
    merged = merge_flags(screened, live)
    assert [(f["start_s"], f["leg"], f["source"]) for f in merged] == [
        (19.9, "agent", "live"), (19.9, "customer", "screen"), (30.0, "agent", "screen")]


def said(leg: str, start_s: float, text: str) -> Heard:
    """A final result as the recognizer gives it, its words 0.3 s apart."""
    words = tuple(Word(w, start_s + 0.3 * i, start_s + 0.3 * i + 0.25) for i, w in enumerate(text.split()))
    return leg, AsrEvent(kind="final", text=text, words=words)


US_CALLS = [
    ("lawful", [said("agent", 0, "Hello, this is Sam calling from Acme Recovery. This call is recorded."),
                said("agent", 4, "Am I speaking with Jane Doe?"), said("customer", 6, "Yes, speaking."),
                said("agent", 8, "Thank you. This is an attempt to collect a debt, and any information obtained "
                                 "will be used for that purpose."),
                said("customer", 14, "I dispute this, it is not my debt."),
                said("agent", 16, "Thank you, I have noted your dispute. We will stop and review it.")],
     {"identity_before_disclosure": "pass", "required_disclosures": "pass", "no_prohibited_language": "pass",
      "dispute_handled": "pass", "politeness": "pass"}),
    ("pressing", [said("agent", 0, "Hi, this is Sam calling from Acme Recovery about the balance on your card."),
                  said("customer", 4, "Yes, speaking."),
                  said("customer", 6, "That amount is wrong, I already paid it."),
                  said("agent", 8, "You still have to pay the balance today, you idiot.")],
     {"identity_before_disclosure": "fail", "required_disclosures": "fail", "no_prohibited_language": "fail",
      "dispute_handled": "fail", "politeness": "fail"}),
    ("ended before anyone spoke", [],
     {"identity_before_disclosure": "n/a", "required_disclosures": "n/a", "no_prohibited_language": "pass",
      "dispute_handled": "n/a", "politeness": "n/a"}),
    ("only the customer spoke", [said("customer", 1, "Hello? Hello?")],
     {"identity_before_disclosure": "n/a", "required_disclosures": "n/a", "no_prohibited_language": "pass",
      "dispute_handled": "n/a", "politeness": "n/a"}),
    ("no debt talk", [said("agent", 0, "Hello, this is Sam from Acme Recovery, this call is recorded. Is Jane there?"),
                      said("customer", 3, "Wrong number."), said("agent", 5, "Sorry to bother you, goodbye.")],
     {"identity_before_disclosure": "n/a", "required_disclosures": "pass", "no_prohibited_language": "pass",
      "dispute_handled": "n/a", "politeness": "pass"}),
]


@pytest.mark.parametrize(("heard", "marks"), [c[1:] for c in US_CALLS], ids=[c[0] for c in US_CALLS])
def test_the_us_pack_wants_the_mini_miranda_after_verification_and_a_pause_after_a_dispute(
        heard: list[Heard], marks: dict[str, str]) -> None:
    rules = RuleEngine.from_pack("us-fdcpa-regf")
    cues = Cues.for_pack(rules)
    found = check_call(heard, rules, cues)
    scorecard = fill_scorecard(found, merge_flags(found.flags, []), cues)
    assert {k: v.mark for k, v in scorecard.items()} == marks
    if marks["required_disclosures"] == "fail":
        assert "attempt to collect a debt" in scorecard["required_disclosures"].why
    customer = [event.text for leg, event in heard if leg == "customer"]
    assert not any(text in item.why for text in customer for item in scorecard.values())


def test_claims_are_taken_once_stale_ones_again_and_failures_only_so_often(store: RecordingStore) -> None:
    store.register("r1", started_at=START)
    store.finish("r1", ended_at=START, duration_s=1.0, sample_rate=8000)
    store.register("r2", started_at=START + timedelta(minutes=1))  # still recording: not screened yet
    assert pending(store) == ["r1"]
    assert claim(store, "r1", "host:1")
    assert not claim(store, "r1", "host:2"), "a live claim was taken twice"
    assert pending(store) == []
    time.sleep(0.01)
    assert pending(store, claim_timeout_s=0) == ["r1"]
    assert claim(store, "r1", "host:2", claim_timeout_s=0), "a stopped run's claim was not taken over"
    store.execute("UPDATE screenings SET status = 'failed' WHERE recording_id = 'r1'")
    assert pending(store) == ["r1"]
    assert claim(store, "r1", "host:3")
    store.execute("UPDATE screenings SET status = 'failed' WHERE recording_id = 'r1'")
    assert store.query("SELECT attempts, worker FROM screenings") == [{"attempts": MAX_ATTEMPTS, "worker": "host:3"}]
    assert pending(store) == []
    assert not claim(store, "r1", "host:4")


@pytest.mark.model
def test_the_process_pool_screens_each_recording_once_and_a_tampered_one_fails_clearly(
        store: RecordingStore, shared: Path, models: ScreenModels, tmp_path: Path) -> None:
    for i, call in enumerate(("call_ptp", "call_dispute", "call_agent_threat")):
        store_call(store, shared, call, minutes=i)
    store_call(store, shared, "call_agent_threat", "tampered", minutes=3)
    path = store.path("tampered")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    seen = []
    report = screen_pending(store, models, workers=2, max_attempts=2, progress=seen.append)
    assert (report.engine, report.workers) == ("process-pool", 2)
    assert {o.recording_id for o in report.screened} == {"call_ptp", "call_dispute", "call_agent_threat"}
    assert {o.worker.split(":")[1] for o in report.outcomes} - {str(os.getpid())}, "screened in this process"
    assert len({o.worker for o in report.outcomes}) <= 2
    assert [o.recording_id for o in seen] == [o.recording_id for o in report.outcomes]
    [failed] = report.failed
    assert failed.recording_id == "tampered"
    assert failed.error.startswith("RecordingTamperedError: ") and "integrity" in failed.error
    row = store.query("SELECT status, error, attempts FROM screenings WHERE recording_id = 'tampered'")[0]
    assert (row["status"], row["error"], row["attempts"]) == ("failed", failed.error, 1)
    threat = load_screening(store, "call_agent_threat")
    assert threat is not None and threat.scorecard["no_prohibited_language"].mark == "fail"
    assert report.summary()["screened"] == 3 and report.summary()["audio_s"] > 100

    done = finished(store)
    again = screen_pending(store, models, workers=2, max_attempts=2)
    assert [o.recording_id for o in again.outcomes] == ["tampered"], "only the failed one is tried again"
    assert finished(store) == done
    assert screen_pending(store, models, workers=2, max_attempts=2).outcomes == []

    raw = b"".join(p.read_bytes() for p in tmp_path.glob("voicebot.db*"))
    texts = [u.text for s in map(lambda i: load_screening(store, i), done) for u in s.transcript]
    assert texts and not [t for t in texts if t.encode() in raw], "a transcript is stored in plain text"


KILLED_RUN = """
import sys
from pathlib import Path
from recordings.batch_screening import ScreenModels, screen_pending
from recordings.store import RecordingStore
with RecordingStore.open(Path(sys.argv[1]), Path(sys.argv[2])) as store:
    screen_pending(store, ScreenModels(vosk_model=Path(sys.argv[3])), workers=1)
"""


@pytest.mark.model
def test_a_run_killed_midway_is_resumed_without_screening_a_call_twice(
        store: RecordingStore, shared: Path, models: ScreenModels, tmp_path: Path) -> None:
    ids = [store_call(store, shared, "call_agent_threat", f"r{i}", minutes=i) for i in range(3)]
    create_tables(store)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "voicebot.db"),
                            str(store.folder), str(models.vosk_model)], start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not finished(store) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the run and its worker, mid-way
        run.wait()
    first = finished(store)
    assert 1 <= len(first) < 3, "the run was not stopped mid-way"
    claimed = [r["recording_id"] for r in store.query("SELECT recording_id FROM screenings "
                                                      "WHERE status = 'claimed'")]
    assert claimed, "the killed run left no claim"
    assert set(pending(store)) == set(ids) - set(first) - set(claimed), "a live run's claims must wait"

    report = screen_pending(store, models, workers=2, claim_timeout_s=0)
    assert {o.recording_id for o in report.screened} == set(ids) - set(first)
    assert not report.failed
    assert set(finished(store)) == set(ids)
    assert {k: v for k, v in finished(store).items() if k in first} == first


@pytest.fixture
def ray_head(tmp_path: Path):
    """A real one-CPU Ray head on free ports, stopped (its whole process group) afterwards."""
    ray = pytest.importorskip("ray", reason="the `cluster` extra (ray) is not installed")
    port = free_port(udp=(), tcp=(0,))
    ports = [str(free_port(udp=(), tcp=(0,))) for _ in range(6)]
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
               "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
               f"--ray-client-server-port={ports[0]}", f"--dashboard-agent-listen-port={ports[1]}",
               f"--dashboard-agent-grpc-port={ports[2]}", f"--runtime-env-agent-port={ports[3]}",
               f"--metrics-export-port={ports[4]}", f"--node-manager-port={ports[5]}"]
    log = (tmp_path / "ray.log").open("w")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        head.terminate()  # `ray start --block` stops the processes it started, then exits
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
            log.close()


@pytest.mark.model
def test_a_ray_cluster_screens_the_recordings(store: RecordingStore, shared: Path, models: ScreenModels,
                                              ray_head: str) -> None:
    store_call(store, shared, "call_agent_threat", "r0")
    store_call(store, shared, "call_dispute", "r1", minutes=1)
    deadline = time.monotonic() + 120
    while True:  # `ray start --block` returns nothing when the head is up: connect until it answers
        try:
            report = screen_pending(store, models, ray_address=ray_head)
            break
        except ScreeningError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert (report.engine, report.workers) == ("ray", 1)
    assert {o.worker.split(":")[1] for o in report.outcomes} != {str(os.getpid())}
    assert {o.recording_id for o in report.screened} == {"r0", "r1"} and not report.failed
    assert load_screening(store, "r1").scorecard["dispute_handled"].mark == "pass"
    assert screen_pending(store, models, ray_address=ray_head).outcomes == []


@pytest.mark.model
def test_an_unreachable_ray_address_is_a_clear_error_and_claims_nothing(store: RecordingStore,
                                                                       models: ScreenModels) -> None:
    pytest.importorskip("ray", reason="the `cluster` extra (ray) is not installed")
    store.register("r1", started_at=START)
    store.finish("r1", ended_at=START, duration_s=1.0, sample_rate=8000)
    with pytest.raises(ScreeningError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:"):
        screen_pending(store, models, ray_address=f"127.0.0.1:{free_port(udp=(), tcp=(0,))}")
    assert pending(store) == ["r1"]


@pytest.mark.model
def test_cli_screens_new_recordings_and_prints_no_transcript(tmp_path: Path, shared: Path) -> None:
    with RecordingStore.open(tmp_path / "voicebot.db", tmp_path / "recordings") as s:
        store_call(s, shared, "call_agent_threat")
    voicebot = shutil.which("voicebot", path=str(Path(sys.executable).parent))
    env = {**os.environ, "VOICEBOT_DATA_DIR": str(tmp_path)}
    run = subprocess.run([voicebot, "recordings", "screen", "--workers", "1"], capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines[0]["recording_id"] == "call_agent_threat" and lines[0]["status"] == "done"
    assert lines[0]["score"] == 25.0 and lines[0]["flags"] >= 3
    assert lines[-1]["summary"]["screened"] == 1
    assert not CJK.search(run.stdout + run.stderr)
    again = subprocess.run([voicebot, "recordings", "screen"], capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr
    [summary] = [json.loads(line)["summary"] for line in again.stdout.splitlines()]
    assert (summary["screened"], summary["failed"], summary["workers"]) == (0, 0, 0)
