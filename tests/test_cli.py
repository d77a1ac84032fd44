import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr.codecs import encode, read_audio_file
from asr.metrics import character_error_rate

VOICEBOT = str(Path(sys.executable).parent / "voicebot")


def voicebot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([VOICEBOT, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.mark.model
def test_transcribe_json_meets_the_cer_target_on_real_speech(shared: Path):
    folder = shared / "audio" / "real-cmn"
    rows = list(csv.reader((folder / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t"))
    result = voicebot("transcribe", "--json", *[str(folder / r[0]) for r in rows])
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).name for r in records] == [r[0] for r in rows]
    assert character_error_rate([r[1] for r in rows], [r["text"] for r in records]) <= 0.25
    first = records[0]
    assert set(first) == {"file", "text", "words", "duration"}
    assert " " not in first["text"]
    assert first["duration"] == pytest.approx(read_audio_file(folder / rows[0][0]).duration_s, abs=0.01)
    assert all(0 <= w["start"] <= w["end"] <= first["duration"] for w in first["words"])
    assert "".join(w["word"] for w in first["words"]) == first["text"]


@pytest.mark.model
def test_stereo_call_gives_one_record_per_leg(shared: Path):
    call = shared / "audio" / "tts-cmn" / "calls" / "call_dispute.wav"
    result = voicebot("transcribe", "--json", str(call))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["leg"] for r in records] == ["agent", "customer"]
    assert "全程录音" in records[0]["text"]


@pytest.mark.model
def test_headless_ulaw_file_is_transcribed(shared: Path, tmp_path: Path, tts_texts):
    pcm = read_audio_file(shared / "audio" / "tts-cmn" / "ulaw8k" / "c08.wav").channels[0]
    raw = tmp_path / "leg.ulaw"
    raw.write_bytes(encode(pcm, "ulaw"))
    result = voicebot("transcribe", "--json", str(raw))
    assert result.returncode == 0, result.stderr
    text = json.loads(result.stdout)["text"]
    assert character_error_rate([tts_texts["c08"]], [text]) < 0.35


@pytest.mark.model
def test_a_bad_file_is_reported_and_the_good_ones_still_transcribed(shared: Path, tmp_path: Path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    good = shared / "audio" / "tts-cmn" / "a01.wav"
    result = voicebot("transcribe", "--json", str(bad), str(good))
    assert result.returncode == 1
    assert "broken.wav is not a readable audio file" in result.stderr
    assert "1 of 2 file(s) could not be read" in result.stderr
    assert json.loads(result.stdout)["file"] == str(good)


def test_missing_model_is_a_clear_error(tmp_path: Path, shared: Path):
    result = voicebot("transcribe", str(shared / "audio" / "tts-cmn" / "a01.wav"),
                      env={"VOICEBOT_VOSK_MODEL": str(tmp_path / "absent")})
    assert result.returncode == 1
    assert "Vosk model not found" in result.stderr
    assert "voicebot models fetch" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.model
def test_demo_bot_reaches_a_promise_and_a_threat_is_cut_off(tmp_path: Path):
    result = voicebot("demo", "--db", str(tmp_path / "demo.db"))
    assert result.returncode == 0, result.stderr
    bot, threat = result.stdout.split("== a supervised agent call")
    assert "全程录音" in bot and "OUTCOME promise_to_pay: 1500.00" in bot
    assert "FLAG" not in bot, "the bot never says what an agent must not"
    assert "FLAG critical: gang" in threat and "ACTION hangup by engine" in threat
    assert "== ended (" in threat, "faster than real time, the replay may end before the hang-up takes effect"
    qa = threat.split("== screening the new recordings")[1]
    assert qa.count(": score ") == 2 and "no_prohibited_language" in qa, "the threat call fails the scorecard"
    assert "== QA sample for " in qa and qa.count("random)") >= 2, "one call of each agent is sampled"
    assert "hash chain intact" in result.stdout.splitlines()[-1]
    kinds = [json.loads(line)["kind"] for line in voicebot("audit", "export", "--db", str(tmp_path / "demo.db")
                                                           ).stdout.splitlines()]
    assert {"bot_outcome", "flag", "action", "call_end"} <= set(kinds)


def test_models_fetch_reports_the_installed_model():
    result = voicebot("models", "fetch")
    assert result.returncode == 0, result.stderr
    assert "Vosk model ready" in result.stdout
    assert "Static decoding graph ready" in result.stdout
