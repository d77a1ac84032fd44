"""The intent classifier: labelled data, training both kinds, the installed model, and `voicebot nlu`."""

import asyncio
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_pipeline import Collect

from voicebot.cli import main
from voicebot.config import Config
from voicebot.frames import IntentFrame, SpeechEndFrame, SpeechPauseFrame, TranscriptFrame
from voicebot.nlu import INTENTS, Slots, Understanding
from voicebot.nlu.classify import IntentClassifier, IntentModelMissingError, understanding_json
from voicebot.nlu.data import (
    THANO_TO_INTENT,
    LabelledDataError,
    load_labelled,
    load_thano,
    load_tts_customer,
    normalize,
    split_heldout,
)
from voicebot.nlu.train import (
    MODEL_NAME,
    TokenizerMissingError,
    install_tokenizer,
    model_is_current,
    train_intent_model,
)
from voicebot.stages.understand import Understand, complete_reply

TODAY = date(2025, 3, 12)
CLEAR = {
    "对我是本人": "identity_confirmed",
    "我下周五还两千块": "promise_to_pay",
    "这笔钱不是我借的": "dispute",
    "你打错电话了 我不认识他": "wrong_person",
    "我就是不还 你们爱怎么样怎么样": "refusal",
    "我失业了 能不能分期还": "hardship",
    "我在开会 晚点再打给我": "callback",
    "我昨天已经还清了": "already_paid",
    "你们天天打电话骚扰 我要投诉": "complaint",
    "喂 喂 听得见吗": "other",
}


@pytest.fixture(scope="module")
def ngram_models(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with an n-gram intent model trained here (a second or two)."""
    models = tmp_path_factory.mktemp("models")
    report = train_intent_model(models, config.shared_dir, kinds=("ngram",))
    assert report.kept == "ngram"
    return models


def test_intents_are_exactly_the_issues_names() -> None:
    assert set(INTENTS) == {"identity_confirmed", "promise_to_pay", "dispute", "wrong_person", "refusal",
                            "hardship", "callback", "already_paid", "complaint", "other"}
    assert len(INTENTS) == 10


def test_labelled_set_is_large_and_covers_every_intent() -> None:
    examples = load_labelled()
    assert len(examples) >= 600
    counts = {intent: sum(e.intent == intent for e in examples) for intent in INTENTS}
    assert min(counts.values()) >= 60, counts
    assert len({normalize(e.text) for e in examples}) == len(examples), "duplicate utterances"


def test_heldout_split_is_stratified_and_fixed() -> None:
    examples = load_labelled()
    train, heldout = split_heldout(examples)
    assert (train, heldout) == split_heldout(examples)
    assert not {e.text for e in train} & {e.text for e in heldout}
    for intent in INTENTS:
        share = sum(e.intent == intent for e in heldout) / sum(e.intent == intent for e in examples)
        assert 0.15 < share < 0.25


@pytest.mark.parametrize(("content", "message"), [
    ("text\tintent\n", ":1: the header"),
    ("intent\ttext\nrefusal\n", ":2: expected"),
    ("intent\ttext\nangry\t滚\n", ":2: unknown intent 'angry'"),
])
def test_malformed_labelled_file_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelledDataError, match=message):
        load_labelled(path)


def test_evaluation_sets_map_to_our_intents(shared: Path) -> None:
    thano = load_thano(shared)
    assert len(thano) > 500
    assert {e.intent for e in thano} == set(INTENTS) - {"refusal"}
    assert set(THANO_TO_INTENT.values()) <= set(INTENTS)
    tts = load_tts_customer(shared)
    assert len(tts) == 30 and {e.intent for e in tts} == set(INTENTS)


def test_model_missing_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(IntentModelMissingError, match="voicebot nlu train"):
        IntentClassifier.load(tmp_path)


def test_tokenizer_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TokenizerMissingError, match="bert-base-chinese"):
        install_tokenizer(tmp_path / "models", tmp_path / "no-shared")


def test_trained_ngram_model_classifies_clear_replies(ngram_models: Path) -> None:
    classifier = IntentClassifier.load(ngram_models)
    results = classifier.classify_many(list(CLEAR), TODAY)
    assert {u.text: u.intent for u in results} == CLEAR
    assert all(0.0 < u.confidence <= 1.0 for u in results)
    promise = results[1]
    assert (promise.slots.date, str(promise.slots.amount)) == (date(2025, 3, 21), "2000")
    assert model_is_current(ngram_models)


def test_empty_reply_is_other(ngram_models: Path) -> None:
    understanding = IntentClassifier.load(ngram_models).classify("  。", TODAY)
    assert (understanding.intent, understanding.confidence) == ("other", 1.0)


def test_small_bert_trains_saves_and_loads(config: Config, tmp_path: Path) -> None:
    from voicebot.nlu.bert import BertModel, BertSettings

    tokenizer = install_tokenizer(tmp_path, config.shared_dir)
    train, _ = split_heldout(load_labelled())
    model = BertModel.train(train[::4], tokenizer, seed=1, settings=BertSettings(epochs=3))
    folder = tmp_path / MODEL_NAME
    folder.mkdir()
    model.save(folder)
    (folder / "meta.json").write_text(json.dumps({"kind": "bert", "labels": model.labels}), encoding="utf-8")
    classifier = IntentClassifier.load(tmp_path)
    texts = list(CLEAR)
    assert (classifier.model.predict_proba(texts) == pytest.approx(model.predict_proba(texts), abs=1e-6))
    understanding = classifier.classify("我下周五还两千块", TODAY)
    assert understanding.intent in INTENTS and 0 < understanding.confidence <= 1


def test_sentence_model_trains_saves_and_loads_with_its_encoder(tmp_path: Path) -> None:
    from voicebot.nlu.sentence import SentenceModel

    train, _ = split_heldout(load_labelled())
    model = SentenceModel.train(train[::3])
    folder = tmp_path / MODEL_NAME
    folder.mkdir()
    model.save(folder)
    (folder / "meta.json").write_text(json.dumps({"kind": "sentence", "labels": model.labels}), encoding="utf-8")
    classifier = IntentClassifier.load(tmp_path)
    texts = [*CLEAR, "this isn't my debt, I never had an account with them"]
    assert classifier.model.predict_proba(texts) == pytest.approx(model.predict_proba(texts), abs=1e-6)
    assert classifier.classify(texts[-1], TODAY).intent == "dispute"


def test_cli_classify_prints_one_json_object_per_line(ngram_models: Path, tmp_path: Path) -> None:
    lines = tmp_path / "replies.txt"
    lines.write_text("我下周五还两千块\n你们打错了\n\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["nlu", "classify", str(lines), "--today", "2025-03-12"],
                                env={"VOICEBOT_MODELS_DIR": str(ngram_models)})
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text"] for r in rows] == ["我下周五还两千块", "你们打错了", ""]
    assert rows[0] == {"text": "我下周五还两千块", "intent": "promise_to_pay", "confidence": rows[0]["confidence"],
                       "slots": {"date": "2025-03-21", "amount": "2000"}}
    assert all(set(r) == {"text", "intent", "confidence", "slots"} for r in rows)
    assert all(set(r["slots"]) == {"date", "amount"} and isinstance(r["confidence"], float) for r in rows)
    assert "我下周五" in result.output  # not \\u-escaped


def test_cli_classify_reads_stdin_and_json_matches_library(ngram_models: Path) -> None:
    result = CliRunner().invoke(main, ["nlu", "classify", "--today", "2025-03-12"], input="我昨天已经还清了\n",
                                env={"VOICEBOT_MODELS_DIR": str(ngram_models)})
    assert result.exit_code == 0, result.output
    expected = understanding_json(IntentClassifier.load(ngram_models).classify("我昨天已经还清了", TODAY))
    assert json.loads(result.output) == expected


def test_cli_classify_without_model_exits_with_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["nlu", "classify"], input="你好\n",
                                env={"VOICEBOT_MODELS_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "voicebot nlu train" in result.output


def test_cli_train_if_missing_skips_a_current_model(ngram_models: Path) -> None:
    result = CliRunner().invoke(main, ["nlu", "train", "--if-missing"], env={"VOICEBOT_MODELS_DIR": str(ngram_models)})
    assert result.exit_code == 0, result.output
    assert "current" in result.output


async def heard_turns(classifier: IntentClassifier, frames: list) -> list[tuple[int, str, str]]:
    """Run frames through the Understand stage: (frames seen so far, intent, text) for each IntentFrame."""
    stage, out = Understand(classifier.classify, lambda: TODAY, None), Collect()
    stage.link(out)
    for frame in frames:
        await stage.process(frame)
    return [(out.frames.index(f), f.understanding.intent, f.understanding.text)
            for f in out.frames if isinstance(f, IntentFrame)]


def said(text: str) -> TranscriptFrame:
    return TranscriptFrame(leg="customer", text=text, final=True, start_s=0.0, end_s=1.0)


def test_a_complete_reply_is_answered_at_a_short_pause(ngram_models: Path) -> None:
    classifier = IntentClassifier.load(ngram_models)
    turns = asyncio.run(heard_turns(classifier, [said("对我就是"), SpeechPauseFrame(leg="customer"),
                                                 SpeechEndFrame(leg="customer")]))
    assert turns == [(2, "identity_confirmed", "对我就是")]


def test_a_promise_without_its_amount_waits_for_the_end_of_the_turn(ngram_models: Path) -> None:
    classifier = IntentClassifier.load(ngram_models)
    frames = [said("我下周五"), SpeechPauseFrame(leg="customer"), said("还两千"), SpeechPauseFrame(leg="customer"),
              SpeechEndFrame(leg="customer")]
    turns = asyncio.run(heard_turns(classifier, frames))
    assert turns == [(4, "promise_to_pay", "我下周五还两千")]


def test_an_unclear_reply_is_answered_only_when_the_customer_stops(ngram_models: Path) -> None:
    classifier = IntentClassifier.load(ngram_models)
    frames = [said("喂喂听得见吗"), SpeechPauseFrame(leg="customer"), SpeechEndFrame(leg="customer")]
    assert asyncio.run(heard_turns(classifier, frames)) == [(3, "other", "喂喂听得见吗")]


def test_a_complete_reply_needs_a_confident_intent_three_words_and_what_it_names() -> None:
    sure, unsure = 0.95, 0.5
    assert complete_reply(Understanding("对是我", "identity_confirmed", sure))
    assert complete_reply(Understanding("yes it's me", "identity_confirmed", sure))
    assert not complete_reply(Understanding("对是我", "identity_confirmed", unsure))
    assert not complete_reply(Understanding("对", "identity_confirmed", sure))
    assert not complete_reply(Understanding("i can't", "hardship", sure))
    assert not complete_reply(Understanding("嗯", "other", sure))
    assert not complete_reply(Understanding("下周五还", "promise_to_pay", sure, Slots(date=date(2025, 3, 21))))
    assert complete_reply(Understanding("下周五还两千", "promise_to_pay", sure,
                                        Slots(date=date(2025, 3, 21), amount=Decimal(2000))))
    assert not complete_reply(Understanding("晚点打", "callback", sure))
