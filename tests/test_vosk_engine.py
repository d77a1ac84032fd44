import itertools
from pathlib import Path

import numpy as np
import pytest

from asr.codecs import AudioFormatError, decode, encode, read_audio_file, resample
from asr.metrics import character_error_rate
from asr.static_graph import StaticGraphError, build_static_graph, split_symbols
from asr.transcribe import leg_events, transcribe_audio
from asr.vosk_engine import LIVE_DECODING, POOL_SIZE, ModelMissingError, VoskEngine, join_words

pytestmark = pytest.mark.model


def utterance(shared: Path, name: str):
    return read_audio_file(shared / "audio" / "tts-cmn" / f"{name}.wav")


def test_stream_gives_partials_then_a_final(engine: VoskEngine, shared: Path, tts_texts):
    audio = utterance(shared, "b01")
    events = list(leg_events(engine, audio.channels[0], audio.sample_rate))
    kinds = [e.kind for e in events]
    assert "partial" in kinds
    assert kinds[-1] == "final"
    final_text = "".join(e.text for e in events if e.kind == "final")
    assert character_error_rate([tts_texts["b01"]], [final_text]) < 0.15


def test_word_times_are_in_call_time(engine: VoskEngine, shared: Path):
    pcm = utterance(shared, "a01").channels[0]
    stream = engine.stream(16000)
    events = stream.accept(pcm, start_s=100.0) + stream.finish()
    words = [w for e in events if e.kind == "final" for w in e.words]
    assert words
    assert 100.0 <= words[0].start_s < 100.8
    assert words[-1].end_s <= 100.0 + len(pcm) / 16000 + 0.05
    assert all(a.start_s <= b.start_s for a, b in itertools.pairwise(words))


def test_gaps_between_fed_chunks_keep_call_time(engine: VoskEngine, shared: Path):
    first, second = utterance(shared, "b02").channels[0], utterance(shared, "c02").channels[0]
    stream = engine.stream(16000)
    events = stream.accept(first, start_s=5.0) + stream.finish()
    events += stream.accept(second, start_s=60.0) + stream.finish()
    finals = [e for e in events if e.kind == "final"]
    assert len(finals) == 2
    assert 5.0 <= finals[0].start_s < 6.0
    assert 60.0 <= finals[1].start_s < 61.0
    assert finals[1].end_s <= 60.0 + len(second) / 16000 + 0.05


def test_a_recognizer_handed_back_serves_the_next_call_with_its_own_times(engine: VoskEngine, shared: Path, tts_texts):
    first, second = utterance(shared, "b02").channels[0], utterance(shared, "b01").channels[0]
    spares = [engine.stream(16000) for _ in range(POOL_SIZE)]  # earlier calls' idle recognizers, out of the way
    stream = engine.stream(16000)
    stream.accept(first, start_s=30.0)  # the call ends mid-utterance: closing settles it
    stream.close()
    reused = engine.stream(16000)
    assert reused._rec is not None and reused._fed == len(first)
    events = reused.accept(second, start_s=0.0) + reused.finish()
    finals = [e for e in events if e.kind == "final"]
    assert 0.0 <= finals[0].start_s < 1.0
    assert finals[-1].end_s <= len(second) / 16000 + 0.05
    assert character_error_rate([tts_texts["b01"]], ["".join(e.text for e in finals)]) < 0.15
    for spare in spares:
        spare.close()


def test_telephone_ulaw_8k_is_recognised(engine: VoskEngine, shared: Path, tts_texts):
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "ulaw8k" / "a08.wav")
    assert audio.sample_rate == 8000
    [leg] = transcribe_audio(engine, audio)
    assert character_error_rate([tts_texts["a08"]], [leg.text]) < 0.35


def test_raw_alaw_8k_stream_is_recognised(engine: VoskEngine, shared: Path, tts_texts):
    audio = utterance(shared, "c04")
    payload = encode(resample(audio.channels[0], 16000, 8000), "alaw")
    pcm = decode(payload, "alaw")
    text = "".join(e.text for e in leg_events(engine, pcm, 8000) if e.kind == "final")
    assert character_error_rate([tts_texts["c04"]], [text]) < 0.35


def test_stereo_call_gives_each_leg_its_own_turns(engine: VoskEngine, shared: Path, call_turns):
    audio = read_audio_file(shared / "audio" / "tts-cmn" / "calls" / "call_agent_threat.wav")
    agent, customer = transcribe_audio(engine, audio)
    assert (agent.leg, customer.leg) == ("agent", "customer")
    turns = [t for t in call_turns if t["call"] == "call_agent_threat"]
    for leg in (agent, customer):
        mine = [t for t in turns if t["leg"] == leg.leg]
        reference = "".join(t["text"] for t in mine)
        assert character_error_rate([reference], [leg.text]) < 0.2
        for word in leg.words:
            assert any(float(t["start_s"]) - 0.3 <= word.start_s <= float(t["end_s"]) + 0.1 for t in mine)


def test_one_model_serves_concurrent_legs(engine: VoskEngine, shared: Path, tts_texts):
    a, c = utterance(shared, "a02").channels[0], utterance(shared, "c08").channels[0]
    agent, customer = engine.stream(16000), engine.stream(16000)
    events = {"agent": [], "customer": []}
    for i in range(0, max(len(a), len(c)), 1600):
        events["agent"] += agent.accept(a[i : i + 1600]) if i < len(a) else []
        events["customer"] += customer.accept(c[i : i + 1600]) if i < len(c) else []
    events["agent"] += agent.finish()
    events["customer"] += customer.finish()
    text = {leg: "".join(e.text for e in evs if e.kind == "final") for leg, evs in events.items()}
    assert character_error_rate([tts_texts["a02"]], [text["agent"]]) < 0.2
    assert character_error_rate([tts_texts["c08"]], [text["customer"]]) < 0.2


@pytest.fixture(scope="module")
def lookahead_engine(config) -> VoskEngine:
    """The model decoding on its lookahead pair (each recognizer expands its own graph), as phrase hints need."""
    return VoskEngine.load(config.vosk_model, LIVE_DECODING, shared_graph=False)


def test_phrase_hints_restrict_results_to_the_phrases(lookahead_engine: VoskEngine, shared: Path):
    audio = utterance(shared, "c04")
    stream = lookahead_engine.stream(16000, phrases=["一次还清", "下个月", "发工资", "我不认识这个人"])
    events = stream.accept(audio.channels[0]) + stream.finish()
    words = {w.word for e in events for w in e.words}
    assert words
    assert words <= {"一次", "还清", "下个月", "发", "工资", "我", "不", "认识", "这个", "人", "一", "次"}


def test_phrases_split_into_vocabulary_words(engine: VoskEngine):
    assert engine.split_phrase("一次还清") == ["一次", "还清"]
    assert engine.knows("逾期")
    assert not engine.knows("一次还清")


def test_phrase_characters_outside_the_vocabulary_are_dropped(engine: VoskEngine):
    assert engine.split_phrase("还款☃") == ["还款"]


def test_silence_gives_no_result(engine: VoskEngine):
    stream = engine.stream(8000)
    assert stream.accept(np.zeros(8000 * 2, dtype=np.int16)) + stream.finish() == []


def test_stream_refuses_a_wrong_rate(engine: VoskEngine):
    with pytest.raises(AudioFormatError):
        engine.stream(44100)


def test_missing_model_says_how_to_get_it(tmp_path: Path):
    with pytest.raises(ModelMissingError, match=r"VOICEBOT_VOSK_MODEL.*voicebot models fetch"):
        VoskEngine.load(tmp_path / "nowhere")


def test_incomplete_model_names_what_is_missing(tmp_path: Path):
    (tmp_path / "am").mkdir()
    with pytest.raises(ModelMissingError, match=r"missing am/final\.mdl"):
        VoskEngine.load(tmp_path)


@pytest.mark.parametrize(("words", "text"), [
    (["您好", "这里", "是"], "您好这里是"),
    (["hello", "world"], "hello world"),
    (["我", "用", "app", "还款"], "我用app还款"),
    ([], ""),
])
def test_join_words_spaces_only_latin_words(words, text):
    assert join_words(words) == text


def test_live_engine_decodes_on_the_shared_static_graph(engine: VoskEngine, lookahead_engine: VoskEngine,
                                                        shared: Path):
    assert engine.static and not lookahead_engine.static
    with pytest.raises(ValueError, match="phrase hints"):
        engine.stream(16000, phrases=["一次还清"])
    pcm = utterance(shared, "c05").channels[0]
    texts = []
    for eng in (engine, lookahead_engine):
        stream = eng.stream(16000)
        texts.append("".join(e.text for e in stream.accept(pcm) + stream.finish() if e.kind == "final"))
        stream.close()
    assert texts[0] and texts[0] == texts[1]


def test_a_model_fst_loses_only_its_symbol_tables(config, tmp_path: Path):
    gr = config.vosk_model / "graph" / "Gr.fst"
    words = dict(split_symbols(gr, tmp_path / "Gr.fst"))
    assert words["<eps>"] == 0 and "还款" in words and len(words) > 90_000
    assert 0 < gr.stat().st_size - (tmp_path / "Gr.fst").stat().st_size < 5_000_000
    with pytest.raises(StaticGraphError, match="not a binary OpenFst"):
        split_symbols(config.vosk_model / "graph" / "disambig_tid.int", tmp_path / "x.fst")


def test_building_the_static_graph_says_what_is_missing(config, tmp_path: Path, monkeypatch):
    (tmp_path / "graph").mkdir()
    with pytest.raises(StaticGraphError, match="not a lookahead model"):
        build_static_graph(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StaticGraphError, match="libfst-tools"):
        build_static_graph(config.vosk_model)
