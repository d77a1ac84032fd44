from pathlib import Path

import numpy as np
import pytest

from asr.codecs import AudioFormatError, read_audio_file
from asr.vad import SpeechChunk, SpeechEnd, SpeechPause, VoiceGate


def utterance_with_silence(shared: Path, lead_s: float = 2.0, tail_s: float = 2.0) -> tuple[np.ndarray, int]:
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "c04.wav")
    rate = audio.sample_rate
    pcm = np.concatenate([np.zeros(int(lead_s * rate), np.int16), audio.channels[0],
                          np.zeros(int(tail_s * rate), np.int16)])
    return pcm, rate


def passed_audio(events) -> int:
    return sum(len(e.pcm) for e in events if isinstance(e, SpeechChunk))


def test_silence_passes_nothing():
    gate = VoiceGate(8000)
    events = gate.accept(np.zeros(8000 * 3, dtype=np.int16)) + gate.finish()
    assert events == []


def test_speech_passes_with_preroll_and_ends_after_hangover(shared: Path):
    pcm, rate = utterance_with_silence(shared)
    gate = VoiceGate(rate, preroll_ms=300, hangover_ms=600)
    events = gate.accept(pcm) + gate.finish()
    chunks = [e for e in events if isinstance(e, SpeechChunk)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(ends) == 1
    # the utterance (with ttskit's own ~0.3 s lead silence) starts at 2.0 s
    assert 1.9 <= chunks[0].start_s <= 2.5
    speech_end = len(pcm) / rate - 2.0
    assert speech_end < ends[0].end_s <= speech_end + 1.0
    assert passed_audio(events) / rate == pytest.approx(ends[0].end_s - chunks[0].start_s, abs=0.02)
    assert passed_audio(events) < 0.6 * len(pcm)


def test_chunk_times_match_their_position_in_the_call(shared: Path):
    pcm, rate = utterance_with_silence(shared)
    gate = VoiceGate(rate)
    for event in gate.accept(pcm) + gate.finish():
        if isinstance(event, SpeechChunk):
            start = round(event.start_s * rate)
            assert np.array_equal(event.pcm, pcm[start : start + len(event.pcm)])


def test_feeding_in_odd_pieces_gives_the_same_result(shared: Path):
    pcm, rate = utterance_with_silence(shared)
    whole = VoiceGate(rate)
    expected = whole.accept(pcm) + whole.finish()
    pieces = VoiceGate(rate)
    got = []
    for i in range(0, len(pcm), 333):
        got += pieces.accept(pcm[i : i + 333])
    got += pieces.finish()
    assert [e.end_s for e in got if isinstance(e, SpeechEnd)] == [e.end_s for e in expected
                                                                   if isinstance(e, SpeechEnd)]
    assert passed_audio(got) == passed_audio(expected)


def test_speech_still_open_at_the_end_is_closed_by_finish(shared: Path):
    pcm, rate = utterance_with_silence(shared, tail_s=0.0)
    gate = VoiceGate(rate)
    events = gate.accept(pcm[: len(pcm) - rate // 2])
    assert not any(isinstance(e, SpeechEnd) for e in events)
    closing = gate.finish()
    assert isinstance(closing[-1], SpeechEnd)


def test_wrong_rate_is_refused():
    with pytest.raises(AudioFormatError):
        VoiceGate(44100)


def test_aggressiveness_out_of_range_is_refused():
    with pytest.raises(ValueError, match="0–3"):
        VoiceGate(8000, aggressiveness=5)


def test_a_short_pause_is_announced_before_the_utterance_ends(shared: Path):
    pcm, rate = utterance_with_silence(shared)
    gate = VoiceGate(rate, hangover_ms=600, pause_ms=240)
    events = gate.accept(pcm) + gate.finish()
    pauses = [e for e in events if isinstance(e, SpeechPause)]
    end = next(e for e in events if isinstance(e, SpeechEnd))
    assert pauses and pauses[-1].end_s == pytest.approx(end.end_s - 0.36, abs=1e-6)
    assert events.index(pauses[-1]) < events.index(end)
    assert not any(isinstance(e, SpeechPause) for e in VoiceGate(rate).accept(pcm))
