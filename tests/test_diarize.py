"""Speaker diarization of mono recordings, splitting them by speaker, and installing the diarization models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.codecs import AudioFormatError, decode, encode, read_audio_file, resample
from asr.diarize import (
    MODEL_FILES,
    DiarizationModelMissingError,
    Diarizer,
    SpeakerTurn,
    agent_speaker,
    split_by_speaker,
)
from asr.vosk_engine import ModelMissingError
from voicebot.config import Config
from voicebot.models import DIARIZATION_SHA256, ModelFetchError, fetch_diarization_models, sha256_of

RATE = 8000
TURN_S = 3.0
GAP_S = 0.5


@pytest.fixture(scope="module")
def diarizer(config: Config) -> Diarizer:
    """The real diarization models, loaded once for this module."""
    return Diarizer.load(config.models_dir)


@pytest.fixture(scope="module")
def two_voice_call(shared: Path) -> tuple[np.ndarray, list[SpeakerTurn]]:
    """Two real livestream hosts taking 3 s turns over an 8 kHz μ-law line, with the true turns."""
    folder = shared / "audio" / "real-cmn"
    voices = {name: phone_line(read_audio_file(folder / f"{clip}.wav").channels[0])
              for name, clip in (("A", "cmn_15_livestream_spk1"), ("B", "cmn_16_livestream_spk2"))}
    pieces, truth, at_s = [silence(GAP_S)], [], GAP_S
    step = round(TURN_S * RATE)
    for k in range(0, max(len(v) for v in voices.values()), step):
        for name, pcm in voices.items():
            piece = pcm[k : k + step]
            if len(piece) < RATE:
                continue
            truth.append(SpeakerTurn(at_s, at_s + len(piece) / RATE, name))
            pieces += [piece, silence(GAP_S)]
            at_s += len(piece) / RATE + GAP_S
    return np.concatenate(pieces), truth


@pytest.fixture(scope="module")
def diarized_call(diarizer: Diarizer, two_voice_call) -> tuple[np.ndarray, list[SpeakerTurn], list[SpeakerTurn]]:
    """The two-voice call, its true turns, and the turns the diarizer finds."""
    pcm, truth = two_voice_call
    return pcm, truth, diarizer.turns(pcm, RATE)


def phone_line(pcm16k: np.ndarray) -> np.ndarray:
    return decode(encode(resample(pcm16k, 16000, RATE), "ulaw"), "ulaw")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def overlap_s(a: SpeakerTurn, b: SpeakerTurn) -> float:
    return max(0.0, min(a.end_s, b.end_s) - max(a.start_s, b.start_s))


def label_map(turns: list[SpeakerTurn], truth: list[SpeakerTurn]) -> dict[str, str]:
    """Each diarized label mapped to the true speaker it overlaps most."""
    speakers = sorted({t.speaker for t in truth})
    return {label: max(speakers, key=lambda s: sum(overlap_s(h, t) for h in turns if h.speaker == label
                                                   for t in truth if t.speaker == s))
            for label in {t.speaker for t in turns}}


@pytest.mark.model
def test_two_real_voices_are_told_apart(diarized_call):
    pcm, truth, turns = diarized_call
    mapping = label_map(turns, truth)
    assert sorted(mapping.values()) == ["A", "B"]
    right_s = sum(overlap_s(h, t) for h in turns for t in truth if mapping[h.speaker] == t.speaker)
    assert right_s >= 0.8 * sum(t.end_s - t.start_s for t in truth)
    assert all(0 <= t.start_s < t.end_s <= len(pcm) / RATE for t in turns)


@pytest.mark.model
def test_split_by_speaker_puts_each_voice_on_its_own_channel(diarized_call):
    pcm, truth, turns = diarized_call
    agent = next(label for label, speaker in label_map(turns, truth).items() if speaker == "A")
    legs = split_by_speaker(pcm, RATE, turns, agent)
    assert legs.shape == (len(pcm), 2) and legs.dtype == np.int16

    def energy(channel: int, speaker: str) -> float:
        return sum(float(np.sum(legs[round(t.start_s * RATE) : round(t.end_s * RATE), channel] ** 2.0))
                   for t in truth if t.speaker == speaker)

    assert energy(0, "A") > 0.9 * (energy(0, "A") + energy(1, "A"))
    assert energy(1, "B") > 0.9 * (energy(0, "B") + energy(1, "B"))


def test_split_by_speaker_is_exact_and_overlap_goes_to_both():
    pcm = np.arange(1, 8001, dtype=np.int16)
    turns = [SpeakerTurn(0.1, 0.4, "S1"), SpeakerTurn(0.3, 0.6, "S0"), SpeakerTurn(0.9, 1.5, "S0")]
    legs = split_by_speaker(pcm, RATE, turns, agent_speaker="S1")
    agent, customer = np.zeros_like(pcm), np.zeros_like(pcm)
    agent[800:3200] = pcm[800:3200]
    customer[2400:4800] = pcm[2400:4800]
    customer[7200:] = pcm[7200:]
    np.testing.assert_array_equal(legs[:, 0], agent)
    np.testing.assert_array_equal(legs[:, 1], customer)


@pytest.mark.parametrize(("texts", "first", "agent"), [
    ({"S0": "喂 你好", "S1": "您好 这里 是 贷后 服务 中心 本次 通话 将 全程 录音"}, "S0", "S1"),
    ({"S0": "您 尾号 八八六六 的 信用卡 目前 逾期 二十 天 欠款 三千", "S1": "我 下个月 还款"}, "S1", "S0"),
    ({"S0": "请 提供 身份 证 后 四位", "S1": "好 的"}, "S1", "S0"),
    ({"S0": "hello who is this", "S1": "This call is recorded. I am a debt collector about an overdue payment"},
     "S0", "S1"),
    ({"S0": "嗯 好的", "S1": "你 说"}, "S1", "S1"),
    ({"S0": "逾期", "S1": "逾期"}, "S0", "S0"),
    ({}, "S0", "S0"),
])
def test_agent_is_the_speaker_with_more_collection_phrases(texts: dict[str, str], first: str, agent: str):
    assert agent_speaker(texts, first) == agent


def test_a_missing_model_folder_names_it_and_says_what_to_run(tmp_path: Path):
    for folder, files in MODEL_FILES.items():
        if folder != "resemblyzer-ge2e":
            (tmp_path / folder).mkdir()
            for name in files:
                (tmp_path / folder / name).touch()
    with pytest.raises(DiarizationModelMissingError) as info:
        Diarizer.load(tmp_path)
    assert str(tmp_path / "resemblyzer-ge2e") in str(info.value)
    assert "voicebot models fetch" in str(info.value)
    assert isinstance(info.value, ModelMissingError), "the CLI reports it as a message, not a traceback"


@pytest.mark.model
@pytest.mark.parametrize("pcm", [
    np.zeros(0, np.int16),
    np.full(80, 300, np.int16),
    silence(1.0),
    silence(20.0),
    np.random.default_rng(7).normal(0, 20, 3 * RATE).astype(np.int16),
], ids=["empty", "10ms", "1s-silence", "20s-silence", "3s-faint-noise"])
def test_silence_and_very_short_input_give_no_turns(diarizer: Diarizer, pcm: np.ndarray):
    assert diarizer.turns(pcm, RATE) == []


@pytest.mark.model
@pytest.mark.parametrize(("pcm", "rate"), [
    (np.zeros((RATE, 2), np.int16), RATE),
    (np.zeros(RATE, np.float32), RATE),
    (np.zeros(RATE, np.int16), 4000),
])
def test_stereo_float_or_odd_rate_audio_is_refused(diarizer: Diarizer, pcm: np.ndarray, rate: int):
    with pytest.raises(AudioFormatError):
        diarizer.turns(pcm, rate)


def test_fetch_installs_verified_models_and_replaces_an_altered_one(config: Config, tmp_path: Path):
    models = tmp_path / "models"
    installed = fetch_diarization_models(models, config.shared_dir)
    assert [p.name for p in installed] == list(MODEL_FILES)
    checkpoint = models / "resemblyzer-ge2e" / "pretrained.pt"
    checkpoint.write_bytes(b"tampered")
    fetch_diarization_models(models, config.shared_dir)
    assert sha256_of(checkpoint) == DIARIZATION_SHA256["resemblyzer-ge2e/pretrained.pt"]
    assert sorted(p.name for p in models.iterdir()) == sorted(MODEL_FILES), "no staging folder left"


def test_fetch_refuses_a_source_with_the_wrong_checksum(tmp_path: Path):
    source = tmp_path / "shared" / "models" / "pyannote-segmentation-legacy"
    source.mkdir(parents=True)
    (source / "pytorch_model.bin").write_bytes(b"not the checkpoint")
    models = tmp_path / "models"
    with pytest.raises(ModelFetchError, match=DIARIZATION_SHA256["pyannote-segmentation-legacy/pytorch_model.bin"]):
        fetch_diarization_models(models, tmp_path / "shared")
    assert list(models.iterdir()) == []


def test_fetch_without_a_source_says_where_to_point(tmp_path: Path):
    with pytest.raises(ModelFetchError, match="VOICEBOT_SHARED_DIR"):
        fetch_diarization_models(tmp_path / "models", tmp_path / "no-shared")
