"""Importing external recordings: WAV, MP3 and FLAC, stereo kept per channel, mono split by speaker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.codecs import AudioFormatError, read_audio_file, resample
from recordings.importer import import_recording
from recordings.store import RecordingStore
from voicebot.audit import AuditLog

VOICEBOT = str(Path(sys.executable).parent / "voicebot")


@pytest.fixture
def store(tmp_path: Path):
    with AuditLog.open(tmp_path / "voicebot.db") as audit, RecordingStore.open(audit.path, tmp_path / "rec") as s:
        yield s


@pytest.fixture
def stereo_call(shared: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(shared / "audio" / "tts-cmn" / "calls" / "call_ptp.wav", dtype="int16")
    return data[: rate * 14], rate  # the agent speaks 0.6–9.6 s, the customer 10.2–12.6 s


@pytest.mark.parametrize(("fmt", "exact"), [("WAV", True), ("FLAC", True), ("MP3", False)])
def test_stereo_files_keep_agent_left_and_customer_right(store: RecordingStore, stereo_call, tmp_path: Path,
                                                         fmt: str, exact: bool) -> None:
    data, rate = stereo_call
    path = tmp_path / f"call.{fmt.lower()}"
    sf.write(path, data, rate, format=fmt)
    done = import_recording(store, path, agent_id="a7")
    opened = store.open_audio(done.recording_id)
    meta = store.get(done.recording_id)
    assert (meta.source, meta.agent_id, meta.status) == ("import", "a7", "complete") and not done.diarized
    assert opened.header.sample_rate == rate and abs(opened.duration_s - 14.0) < 0.1
    if exact:
        np.testing.assert_array_equal(opened.frames, data)
    else:  # lossy (libsndfile's MP3 encoder bleeds between channels): each leg is loudest on its own channel
        rms = lambda ch, a, b: np.sqrt(np.mean(opened.frames[int(a * rate):int(b * rate), ch] ** 2.0))  # noqa: E731
        assert rms(0, 1, 6) > 1.2 * rms(1, 1, 6) and rms(1, 10.5, 12.5) > 1.2 * rms(0, 10.5, 12.5)


def test_swap_puts_a_left_customer_on_the_customer_leg(store: RecordingStore, stereo_call, tmp_path: Path) -> None:
    data, rate = stereo_call
    sf.write(tmp_path / "swapped.wav", data[:, ::-1], rate)
    done = import_recording(store, tmp_path / "swapped.wav", agent_id="a7", swap=True)
    np.testing.assert_array_equal(store.open_audio(done.recording_id).frames, data)


def test_a_mono_file_without_diarization_and_a_corrupt_file_are_refused(store: RecordingStore,
                                                                        tmp_path: Path) -> None:
    sf.write(tmp_path / "mono.wav", np.zeros(8000, np.int16), 8000)
    with pytest.raises(ValueError, match="diarization"):
        import_recording(store, tmp_path / "mono.wav", agent_id=None)
    (tmp_path / "bad.mp3").write_bytes(b"ID3" + b"\x00" * 50)
    with pytest.raises(AudioFormatError, match="not a readable audio file"):
        import_recording(store, tmp_path / "bad.mp3", agent_id=None)
    assert store.recordings() == [], "nothing half-imported"


def test_cli_import_reports_bad_files_and_imports_the_rest(stereo_call, tmp_path: Path) -> None:
    data, rate = stereo_call
    sf.write(tmp_path / "good.flac", data, rate)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    db = tmp_path / "v.db"
    files = [str(tmp_path / "broken.wav"), str(tmp_path / "good.flac")]
    result = subprocess.run([VOICEBOT, "recordings", "import", *files,
                             "--agent", "a9", "--started", "2026-11-05T10:00:00+08:00", "--db", str(db)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "broken.wav" in result.stderr
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    listed = subprocess.run([VOICEBOT, "recordings", "list", "--month", "2026-11", "--db", str(db)],
                            capture_output=True, text=True)
    [row] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert row["recording_id"] == line["recording_id"] and row["agent_id"] == "a9" and row["source"] == "import"
    with AuditLog.open(db) as audit:
        assert [r.kind for r in audit.records()] == ["recording_imported"]


@pytest.mark.model
def test_cli_import_of_a_mono_call_puts_each_voice_on_its_own_leg(shared: Path, tmp_path: Path) -> None:
    rate, turn = 8000, 3 * 8000
    voices = [read_audio_file(shared / "audio" / "real-cmn" / f"{clip}.wav").channels[0]
              for clip in ("cmn_15_livestream_spk1", "cmn_16_livestream_spk2")]  # two real speakers
    voices = [resample(v, 16000, rate) for v in voices]
    pieces, truth, gap = [], [], np.zeros(rate // 2, np.int16)
    for k in range(0, min(len(v) for v in voices) - turn, turn):
        for speaker, voice in enumerate(voices):
            start = sum(len(p) for p in pieces)
            pieces += [voice[k:k + turn], gap]
            truth.append((speaker, start, start + turn))
    sf.write(tmp_path / "mono.wav", np.concatenate(pieces), rate)
    db = tmp_path / "v.db"
    result = subprocess.run([VOICEBOT, "recordings", "import", str(tmp_path / "mono.wav"), "--agent", "a1",
                             "--db", str(db)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.splitlines()[-1])
    assert line["diarized"] is True
    with RecordingStore.open(db) as store:
        frames = store.open_audio(line["recording_id"]).frames.astype(float)
    channel_of = [(speaker, int((frames[a:b, 1] ** 2).sum() > (frames[a:b, 0] ** 2).sum())) for speaker, a, b in truth]
    for speaker in (0, 1):
        channels = [c for s, c in channel_of if s == speaker]
        majority = max(set(channels), key=channels.count)
        assert channels.count(majority) / len(channels) >= 0.8, channel_of
    assert {max(set(cs), key=cs.count) for cs in ([c for s, c in channel_of if s == k] for k in (0, 1))} == {0, 1}
