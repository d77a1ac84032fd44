from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st

from asr.codecs import (
    AudioFormatError,
    check_stream_rate,
    decode,
    encode,
    read_audio_file,
    read_raw_file,
    resample,
)


def tone(rate: int, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


@pytest.mark.parametrize("encoding", ["ulaw", "alaw"])
def test_g711_round_trip_keeps_the_signal(encoding):
    pcm = tone(8000)
    payload = encode(pcm, encoding)
    assert len(payload) == len(pcm)
    back = decode(payload, encoding)
    assert back.dtype == np.int16
    assert np.max(np.abs(back.astype(int) - pcm)) < 8000 * 0.04


def test_pcm16_round_trip_is_exact():
    pcm = tone(16000)
    assert np.array_equal(decode(encode(pcm, "pcm16"), "pcm16"), pcm)


def test_odd_pcm16_payload_is_refused():
    with pytest.raises(AudioFormatError, match="odd length"):
        decode(b"\x00\x01\x02", "pcm16")


def test_unknown_encoding_is_refused():
    with pytest.raises(AudioFormatError, match="unknown encoding"):
        decode(b"\x00\x00", "g729")  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [11025, 44100, 48000, 0])
def test_live_legs_only_take_8_or_16_khz(rate):
    with pytest.raises(AudioFormatError, match="8000 or 16000"):
        check_stream_rate(rate)


@given(st.binary(max_size=2000), st.sampled_from(["ulaw", "alaw", "pcm16"]))
def test_decode_raises_only_audio_format_error(payload, encoding):
    try:
        pcm = decode(payload, encoding)
    except AudioFormatError:
        return
    assert pcm.dtype == np.int16


def test_resample_changes_length_by_the_rate_ratio():
    pcm = tone(48000, seconds=1.0)
    out = resample(pcm, 48000, 16000)
    assert out.dtype == np.int16
    assert abs(len(out) - 16000) <= 1


@pytest.mark.parametrize(("rate", "kept"), [(8000, 8000), (16000, 16000), (22050, 16000), (44100, 16000)])
def test_wav_of_any_common_rate_is_read(tmp_path: Path, rate: int, kept: int):
    path = tmp_path / "t.wav"
    soundfile.write(path, tone(rate, seconds=1.0), rate, subtype="PCM_16")
    audio = read_audio_file(path)
    assert audio.sample_rate == kept
    assert len(audio.channels) == 1
    assert audio.duration_s == pytest.approx(1.0, abs=0.01)


def test_stereo_wav_gives_one_channel_per_leg(tmp_path: Path):
    left, right = tone(8000, hz=300), tone(8000, hz=900)
    path = tmp_path / "call.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 8000, subtype="PCM_16")
    audio = read_audio_file(path)
    assert len(audio.channels) == 2
    assert np.array_equal(audio.channels[0], left)
    assert np.array_equal(audio.channels[1], right)


def test_ulaw_wav_from_shared_audio_is_read(shared: Path):
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "ulaw8k" / "a01.wav")
    assert audio.sample_rate == 8000
    assert audio.duration_s > 1.0


def test_non_audio_bytes_are_a_clear_error(tmp_path: Path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all")
    with pytest.raises(AudioFormatError, match="not a readable audio file"):
        read_audio_file(path)


def test_truncated_header_is_a_clear_error(tmp_path: Path):
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(16000), 16000, subtype="PCM_16")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioFormatError, match="not a readable audio file"):
        read_audio_file(bad)


def test_truncated_data_keeps_what_is_there(tmp_path: Path):
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(16000, seconds=1.0), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[: 44 + 16000])
    audio = read_audio_file(cut)
    assert 0.4 < audio.duration_s < 0.6


def test_empty_wav_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioFormatError, match="no audio"):
        read_audio_file(path)


def test_raw_ulaw_file_is_read_at_its_rate(tmp_path: Path):
    path = tmp_path / "leg.ulaw"
    path.write_bytes(encode(tone(8000), "ulaw"))
    audio = read_raw_file(path, "ulaw", 8000)
    assert audio.sample_rate == 8000
    assert len(audio.channels[0]) == 4000


def test_raw_file_at_wrong_rate_is_refused(tmp_path: Path):
    path = tmp_path / "leg.alaw"
    path.write_bytes(encode(tone(8000), "alaw"))
    with pytest.raises(AudioFormatError, match="unsupported sample rate 11025"):
        read_raw_file(path, "alaw", 11025)
