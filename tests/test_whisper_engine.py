"""English speech recognition: Whisper tiny.en behind the Vosk engine's interface, on real English speech, and an
English call supervised under the US pack."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from live_peers import english_call

from asr.codecs import read_audio_file, resample
from asr.metrics import word_error_rate
from asr.vosk_engine import ModelMissingError
from asr.whisper_engine import WhisperEngine
from voicebot.config import Config

pytestmark = pytest.mark.model

WER_BAR = 0.25


@pytest.fixture(scope="module")
def whisper(config: Config) -> WhisperEngine:
    return WhisperEngine.load(config.whisper_model)


def references(shared: Path) -> dict[str, str]:
    folder = shared / "audio" / "real-en"
    return {row[0]: row[1] for row in csv.reader((folder / "transcripts.tsv").open(encoding="utf-8"),
                                                 delimiter="\t")}


def test_transcribe_in_english_meets_the_bar_on_real_speech_the_phone_band_apart(shared: Path) -> None:
    refs, folder = references(shared), shared / "audio" / "real-en"
    done = subprocess.run([str(Path(sys.executable).parent / "voicebot"), "transcribe", "--language", "en", "--json",
                           *(str(folder / name) for name in refs)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = {Path(r["file"]).name: r for r in map(json.loads, done.stdout.splitlines())}
    for band in ("8k", "16k"):
        names = [n for n in refs if (read_audio_file(folder / n).sample_rate == 8000) == (band == "8k")]
        wer = word_error_rate([refs[n] for n in names], [results[n]["text"] for n in names])
        assert wer <= WER_BAR, f"{band}: WER {wer:.3f} over {len(names)} clips"
    for result in results.values():
        starts = [w["start"] for w in result["words"]]
        assert starts == sorted(starts) and starts[0] >= 0 and result["words"][-1]["end"] <= result["duration"] + 0.5


@pytest.mark.parametrize("rate", [16000, 8000])
def test_a_stream_gives_partials_then_a_final_in_call_time(whisper: WhisperEngine, shared: Path, rate: int) -> None:
    name = "en_05_librispeech_1089-134686-0001.wav"
    audio = read_audio_file(shared / "audio" / "real-en" / name)
    pcm = resample(audio.channels[0], audio.sample_rate, rate)
    stream, step, events = whisper.stream(rate), rate // 10, []
    for i in range(0, len(pcm), step):
        events += stream.accept(pcm[i : i + step], 100.0 + i / rate)
    events += stream.finish()
    partials, finals = [e for e in events if e.kind == "partial"], [e for e in events if e.kind == "final"]
    assert partials and len(finals) == 1, "partial results while it speaks, one final when it ends"
    [final] = finals
    assert word_error_rate([references(shared)[name]], [final.text]) <= WER_BAR
    assert 100.0 <= final.start_s < final.end_s <= 100.0 + len(pcm) / rate + 0.5, "word times are in call time"
    assert stream.finish() == [], "nothing is left once settled"
    assert np.isclose(stream.audio_s, len(pcm) / rate)


def test_a_draft_reads_what_the_full_decode_reads_and_nothing_from_silence(whisper: WhisperEngine,
                                                                           shared: Path) -> None:
    folder = shared / "audio" / "real-en"
    drafts, decodes = [], []
    for name in references(shared):
        audio = read_audio_file(folder / name)
        pcm = resample(audio.channels[0], audio.sample_rate, 16000)[: 3 * 16000]
        drafts.append(" ".join(w.word for w in whisper.draft(pcm, 0.0)))
        decodes.append(" ".join(w.word for w in whisper.decode(pcm, 0.0)))
    assert word_error_rate(decodes, drafts) <= WER_BAR, "a partial says what the final will"
    words = whisper.draft(pcm[:16000], 7.0)
    assert all(7.0 <= w.start_s < w.end_s <= 8.0 + 1e-6 for w in words), "spread over the speech, in call time"
    assert whisper.draft(np.zeros(2 * 16000, dtype=np.int16), 0.0) == (), "silence drafts nothing"


def test_a_missing_english_model_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="voicebot models fetch"):
        WhisperEngine.load(tmp_path / "nowhere")


def test_monitor_on_an_english_pack_flags_and_hangs_up_an_english_threat(tmp_path: Path) -> None:
    call = english_call(tmp_path / "threat_en.wav")
    done = subprocess.run([str(Path(sys.executable).parent / "voicebot"), "monitor", str(call), "--pack",
                           "us-fdcpa-regf", "--speed", "4", "--db", str(tmp_path / "m.db"), "--start",
                           "2026-11-23T10:00", "--tz", "America/New_York"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    finals = " ".join(e["text"] for e in events if e["type"] == "final" and e["leg"] == "agent").lower()
    assert "acme recovery" in finals, "the agent's English is recognised"
    flags = [e for e in events if e["type"] == "flag" and e["category"] == "threat"]
    assert flags and flags[0]["leg"] == "agent"
    assert any(e["type"] == "action" and e["action"] == "hangup" for e in events)
    assert "break your legs" not in done.stderr, "transcripts never go to the log"
