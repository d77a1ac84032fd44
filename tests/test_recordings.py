"""The recording store: both legs sealed as they arrive, readable after a crash, refused when tampered with."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from recordings.call_recording import RecordingError
from recordings.keys import KeyRing, RecordingKeyError
from recordings.sealed import RecordingTamperedError, open_sealed, read_frames
from recordings.store import RETENTION_DAYS, RecordingStore
from voicebot.audit import AuditLog

RATE = 8000
START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def audit(audit_log: AuditLog) -> AuditLog:
    """The audit log, in SQLite or PostgreSQL: the recordings' metadata lies beside it."""
    return audit_log


@pytest.fixture
def store(audit: AuditLog, tmp_path: Path):
    with RecordingStore.open(audit.path, tmp_path / "recordings", key_path=tmp_path / "recordings.keys") as s:
        yield s


def tone(seconds: float, freq: float, amp: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def record(store: RecordingStore, call_id: str, legs: dict[str, np.ndarray], *, piece: int = 160,
           started_at: datetime = START, agent: str = "a1") -> None:
    """Write the legs in 20 ms packets, alternating, as adapters do, then finish the recording."""
    store.register(call_id, started_at=started_at, agent_id=agent, adapter="test")
    writer = store.writer(call_id, started_at)
    longest = max(len(p) for p in legs.values())
    for at in range(0, longest, piece):
        for leg, pcm in legs.items():
            if at < len(pcm):
                writer.write(leg, pcm[at:at + piece], RATE)
    writer.close()
    store.finish(call_id, ended_at=started_at + timedelta(seconds=writer.duration_s), duration_s=writer.duration_s,
                 sample_rate=writer.sample_rate, outcome="promise_to_pay",
                 flags=[{"rule": "cn.gang", "category": "gang", "leg": "agent", "start_s": 1.0, "end_s": 2.0}])


def test_both_legs_are_channels_of_one_sealed_file(store: RecordingStore) -> None:
    agent, customer = tone(3.0, 440), tone(3.0, 880)
    record(store, "c1", {"agent": agent, "customer": customer})
    opened = store.open_audio("c1")
    assert opened.complete and opened.header.legs == ("agent", "customer")
    np.testing.assert_array_equal(opened.frames[:, 0], agent)
    np.testing.assert_array_equal(opened.frames[:, 1], customer)
    raw = store.path("c1").read_bytes()
    assert agent[1000:1100].tobytes() not in raw, "the audio is encrypted at rest"
    meta = store.get("c1")
    assert (meta.status, meta.outcome, meta.duration_s, meta.month) == ("complete", "promise_to_pay", 3.0, "2026-11")
    assert meta.flags[0]["category"] == "gang"
    assert meta.retain_until - meta.started_at >= timedelta(days=3 * 365)


def test_a_leg_that_stops_streaming_is_padded_and_the_legs_stay_aligned(store: RecordingStore) -> None:
    agent = tone(4.0, 300)
    record(store, "c2", {"agent": agent, "customer": tone(1.0, 600)})
    frames = store.open_audio("c2").frames
    assert len(frames) == len(agent)
    np.testing.assert_array_equal(frames[:, 0], agent)
    assert not frames[RATE + 10:, 1].any(), "silence after the customer leg stopped"


def test_another_sample_rate_on_one_leg_is_resampled(store: RecordingStore) -> None:
    store.register("c3", started_at=START)
    writer = store.writer("c3", START)
    agent, wideband = tone(1.0, 440), np.full(16000, 500, np.int16)
    for at in range(0, RATE, 160):
        writer.write("agent", agent[at:at + 160], RATE)
        writer.write("customer", wideband[2 * at:2 * at + 320], 16000)
    writer.close()
    assert store.open_audio("c3").frames.shape == (RATE, 2)


def _killed_writer(db: Path, folder: Path, ready: multiprocessing.synchronize.Event) -> None:
    with RecordingStore.open(db, folder, key_path=folder.parent / "recordings.keys") as s:
        s.register("crash", started_at=START)
        writer = s.writer("crash", START)
        for at in range(0, 5 * RATE, 160):
            writer.write("agent", tone(5.0, 440)[at:at + 160], RATE)
            writer.write("customer", tone(5.0, 660)[at:at + 160], RATE)
        ready.set()
        signal.pause()


def test_a_recording_killed_mid_call_is_readable_up_to_the_last_second(audit: AuditLog, tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    ready = multiprocessing.get_context("fork").Event()
    process = multiprocessing.get_context("fork").Process(target=_killed_writer, args=(audit.path, folder, ready))
    process.start()
    assert ready.wait(30)
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    with RecordingStore.open(audit.path, folder, key_path=folder.parent / "recordings.keys") as store:  # reopened
        assert store.get("crash").status == "incomplete" and store.recover() == 0
        assert [r.recording_id for r in store.recordings()] == ["crash"], "listed, so sampled and screened"
        opened = store.open_audio("crash")
    assert not opened.complete
    assert opened.duration_s >= 4.0, f"only {opened.duration_s} s of 5 s survived the kill"
    np.testing.assert_array_equal(opened.frames[:, 0], tone(5.0, 440)[:len(opened.frames)])


def test_a_recording_a_running_process_writes_stays_open_when_another_opens_the_store(
        store: RecordingStore, audit: AuditLog) -> None:
    store.register("live", started_at=datetime.now(UTC))
    with RecordingStore.open(audit.path, store.folder, key_path=store.ring.path) as other:
        assert other.get("live").status == "recording" and other.recover() == 0


def test_a_part_of_the_audio_decrypts_only_the_chunks_that_hold_it(store: RecordingStore) -> None:
    record(store, "long", {"agent": tone(6.0, 440), "customer": tone(6.0, 550)})
    index, whole = store.index_audio("long"), store.open_audio("long").frames
    assert index.frames == len(whole) and index.complete and len(index.offsets) >= 24
    first, stop = RATE * 2 + 37, RATE * 3 + 5
    np.testing.assert_array_equal(np.concatenate(list(read_frames(index, store.ring, first, stop))),
                                  whole[first:stop])
    raw = bytearray(store.path("long").read_bytes())  # damage a chunk near the end, outside that part
    raw[int(index.offsets[-3]) + 4] ^= 1
    store.path("long").write_bytes(bytes(raw))
    assert sum(len(f) for f in read_frames(index, store.ring, first, stop)) == stop - first
    with pytest.raises(RecordingTamperedError, match="integrity"):
        list(read_frames(index, store.ring, first, index.frames))


def test_a_torn_last_piece_is_dropped_and_the_rest_read(store: RecordingStore) -> None:
    record(store, "c4", {"agent": tone(2.0, 440), "customer": tone(2.0, 550)})
    path = store.path("c4")
    path.write_bytes(path.read_bytes()[:-40])  # the empty end marker and part of the last piece are gone
    opened = store.open_audio("c4")
    assert not opened.complete and 1.5 <= opened.duration_s < 2.0


@pytest.mark.parametrize("offset", [-100, -3000, 200])
def test_a_tampered_recording_is_refused_with_a_clear_error(store: RecordingStore, offset: int) -> None:
    record(store, "c5", {"agent": tone(2.0, 440), "customer": tone(2.0, 550)})
    path = store.path("c5")
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises((RecordingTamperedError, RecordingKeyError), match=r"altered|corrupt|does not open|damaged"):
        store.open_audio("c5")


def test_a_chunk_moved_or_appended_is_refused(store: RecordingStore) -> None:
    record(store, "c6", {"agent": tone(1.0, 440), "customer": tone(1.0, 550)})
    path = store.path("c6")
    data = path.read_bytes()
    path.write_bytes(data + data[-200:])
    with pytest.raises(RecordingTamperedError):
        store.open_audio("c6")


def test_a_wrong_or_missing_key_is_refused_with_a_clear_error(store: RecordingStore, tmp_path: Path) -> None:
    record(store, "c7", {"agent": tone(1.0, 440), "customer": tone(1.0, 550)})
    other = KeyRing.load(tmp_path / "other.keys", create=True)
    with pytest.raises(RecordingKeyError, match="lacks"):
        open_sealed(store.path("c7"), other)
    same_id = KeyRing(other.path, {store.ring.current_id: bytes(32)})
    with pytest.raises(RecordingKeyError, match="not the one it was sealed with"):
        open_sealed(store.path("c7"), same_id)
    with pytest.raises(RecordingKeyError, match="missing"):
        KeyRing.load(tmp_path / "nowhere.keys")
    (tmp_path / "bad.keys").write_text("k1 zz\n")
    with pytest.raises(RecordingKeyError, match=r"bad\.keys:1"):
        KeyRing.load(tmp_path / "bad.keys")


def test_key_file_is_private(store: RecordingStore) -> None:
    assert stat.S_IMODE(store.ring.path.stat().st_mode) == 0o600


def test_key_rotation_rewraps_old_recordings_and_seals_new_ones_with_the_new_key(store: RecordingStore,
                                                                                 audit: AuditLog) -> None:
    record(store, "old", {"agent": tone(1.0, 440), "customer": tone(1.0, 550)})
    first = store.ring.current_id
    before = store.open_audio("old").frames
    new_id, rewrapped = store.rotate_key(audit, actor="admin")
    assert new_id != first and rewrapped == 1
    assert store.get("old").key_id == new_id
    np.testing.assert_array_equal(store.open_audio("old").frames, before)
    record(store, "new", {"agent": tone(1.0, 440), "customer": tone(1.0, 550)})
    assert store.get("new").key_id == new_id
    reloaded = KeyRing.load(store.ring.path)
    assert list(reloaded.keys) == [first, new_id], "old keys are kept"
    assert open_sealed(store.path("old"), KeyRing(reloaded.path, {new_id: reloaded.keys[new_id]})).complete
    assert [r.data for r in audit.records() if r.kind == "recording_key_rotated"] == [
        {"key_id": new_id, "rewrapped": 1}]


def test_purge_after_retention_deletes_and_audits(store: RecordingStore, audit: AuditLog) -> None:
    record(store, "kept", {"agent": tone(0.5, 440), "customer": tone(0.5, 550)}, started_at=START)
    record(store, "due", {"agent": tone(0.5, 440), "customer": tone(0.5, 550)},
           started_at=START - timedelta(days=RETENTION_DAYS + 1))
    due_path = store.path("due")
    assert store.purge(audit, now=START + timedelta(days=1), actor="retention") == ["due"]
    assert not due_path.exists() and store.path("kept").exists()
    assert store.get("due").status == "purged"
    [record_] = [r for r in audit.records() if r.kind == "recording_purged"]
    assert record_.call_id == "due" and record_.actor == "retention"
    assert store.purge(audit, now=START + timedelta(days=1), actor="retention") == []
    with pytest.raises(ValueError, match="three years"):
        RecordingStore.open(audit.path, store.folder, key_path=store.ring.path, retention_days=365)


def test_a_full_disk_is_a_clear_recording_error(store: RecordingStore, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    store.register("full", started_at=START)
    writer = store.writer("full", START)
    writer.path.parent.mkdir(parents=True, exist_ok=True)
    writer.path.symlink_to("/dev/full")
    with pytest.raises(RecordingError, match="free disk space"):
        writer.write("agent", tone(1.0, 440), RATE)


def test_metadata_is_listed_by_month_and_agent(store: RecordingStore) -> None:
    record(store, "m1", {"agent": tone(0.5, 440), "customer": tone(0.5, 550)}, agent="a1")
    record(store, "m2", {"agent": tone(0.5, 440), "customer": tone(0.5, 550)}, agent="a2")
    record(store, "m3", {"agent": tone(0.5, 440), "customer": tone(0.5, 550)}, agent="a1",
           started_at=START + timedelta(days=40))
    assert [r.recording_id for r in store.recordings(month="2026-11", agent_id="a1")] == ["m1"]
    assert [r.recording_id for r in store.recordings(month="2026-11")] == ["m1", "m2"]
    assert json.loads(store.query("SELECT flags FROM recordings WHERE recording_id = 'm3'")[0]["flags"])
