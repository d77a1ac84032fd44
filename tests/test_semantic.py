"""The semantic detector: the shipped model under each pack, its thresholds, the stage beside CheckRules, training
and the errors a damaged model or bad data give."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import Collect, run_stage

from compliance_rules.detector import SemanticDetector, contexts_of
from compliance_rules.engine import CallMonitor, CallState, RuleEngine
from compliance_rules.pack import RulePackError, load_pack
from compliance_rules.semantic import MODEL_DIR, Head, SemanticModelError, Threshold, bundled_model, clean
from compliance_rules.training import (
    VETO_FLOOR,
    Example,
    LabelledDataError,
    augmented,
    calibrate,
    lowest_threshold,
    read_examples,
    veto,
    with_contexts,
)
from voicebot.frames import ActionFrame, TranscriptFrame, ViolationFrame
from voicebot.stages.audit import audit_entry
from voicebot.stages.check_meaning import CheckMeaning
from voicebot.stages.check_rules import CheckRules

UNLISTED = [  # wording no rule of the pack lists, and the category the model must give it
    ("你女儿在实验小学三年级二班吧，每天下午四点半放学", "threat"),
    ("报警去啊，看警察管不管你", "provocation"),
    ("你拉黑一个我们就换一个，反正系统里号码多得是", "harassment"),
    ("I know where your kids catch the bus every morning", "threat"),
]
LAWFUL = ["我们是受银行委托的催收公司，请您按时还款", "逾期会按合同报送征信，建议您尽快处理",
          "This is an attempt to collect a debt and any information obtained will be used for that purpose."]


@pytest.fixture(scope="module")
def cn() -> SemanticDetector:
    return SemanticDetector.for_pack(load_pack("cn-collection"))


@pytest.fixture(scope="module")
def us() -> SemanticDetector:
    return SemanticDetector.for_pack(load_pack("us-fdcpa-regf"))


@pytest.mark.parametrize(("text", "category"), UNLISTED)
def test_model_flags_wording_no_rule_lists(cn, us, text: str, category: str) -> None:
    detector = us if text.isascii() else cn
    assert RuleEngine(detector.pack).check("agent", text) == []
    (flag,) = detector.check("agent", text)
    assert (flag.category, flag.source, flag.rule) == (category, "model", f"model.{category}")
    assert flag.model == bundled_model().version and 0 < flag.score <= 1
    assert flag.matched == "", "a model flag quotes no transcript into the audit log"
    threshold = detector.thresholds[category]
    want = detector.pack.actions[flag.severity] if flag.score >= threshold.act else "alert"
    assert flag.action == want


@pytest.mark.parametrize("text", LAWFUL)
def test_model_leaves_lawful_reminders_alone(cn, us, text: str) -> None:
    assert (us if text.isascii() else cn).check("agent", text) == []


def test_model_reads_agents_only_and_state_categories_only_in_their_state(cn) -> None:
    told = "您尾号2288的信用卡逾期六十三天，欠款八千七百元"
    assert cn.check("customer", "你女儿在实验小学三年级，放学四点半") == []
    assert cn.check("agent", told, CallState(verified=True)) == []
    assert [f.category for f in cn.check("agent", told, CallState(verified=False))] == \
        ["disclosure_before_verification"]
    assert contexts_of(CallState(verified=False, third_party=True, disputed=True)) == ("third_party", "disputed")
    assert contexts_of(CallState()) == ("",)


def test_threshold_below_act_only_alerts(cn) -> None:
    text, category = UNLISTED[0]
    score = cn.check("agent", text)[0].score
    head = bundled_model().head
    strict = dataclasses.replace(head, thresholds={"zh": {**head.thresholds["zh"],
                                                          category: Threshold(act=1.01, alert=0.0)}})
    model = type(bundled_model())(strict, bundled_model().encoder)
    (flag,) = SemanticDetector(model, cn.pack).check("agent", text)
    assert (flag.action, flag.score) == ("alert", score)


def test_monitor_runs_the_model_after_the_rules_and_flags_a_category_once(cn) -> None:
    monitor = CallMonitor(RuleEngine(cn.pack), state=CallState(verified=True), model=cn)
    text = "你等着，我明天就带几个兄弟去你家门口坐坐"
    rules = monitor.check("agent", text, final=True)
    assert {f.category for f in rules} == {"gang", "threat"}
    assert monitor.check_meaning("agent", text) == [], "the rules already flagged what the model reads"
    monitor.check("agent", UNLISTED[0][0], final=True)
    assert [f.category for f in monitor.check_meaning("agent", UNLISTED[0][0])] == ["threat"]
    assert monitor.check_meaning("agent", UNLISTED[0][0]) == [], "a category is flagged once per utterance"


async def test_check_meaning_reads_finals_and_stable_partials_off_the_loop(cn) -> None:
    text = UNLISTED[0][0]
    partial = TranscriptFrame(leg="agent", text=text, final=False, start_s=1.0, end_s=3.0)
    final = TranscriptFrame(leg="agent", text=text, final=True, start_s=1.0, end_s=3.2)
    monitor = CallMonitor(RuleEngine(cn.pack), state=CallState(verified=True), model=cn)
    with ThreadPoolExecutor(1) as executor:
        rules, meaning, collect = CheckRules(monitor), CheckMeaning(monitor, executor), Collect()
        rules.link(meaning)
        meaning.link(collect)
        await rules.process(partial)
        assert collect.frames == [partial], "one partial is not yet stable"
        for frame in (partial, final):
            await rules.process(frame)
        out = collect.frames[1:]
    violations = [f for f in out if isinstance(f, ViolationFrame)]
    assert [v.flag.category for v in violations] == ["threat"] and not violations[0].final
    assert [f.action for f in out if isinstance(f, ActionFrame)] in (["hangup"], ["alert"])
    kind, data, _ = audit_entry(violations[0], "in-path", str)
    assert (kind, data["source"], data["model"]) == ("flag", "model", bundled_model().version)


NEGATION = "你放心，没有人会因为信用卡欠款去坐牢"
"""Lawful, yet a rule of cn-collection flags it as a false legal threat."""


def with_veto(detector: SemanticDetector, veto: float) -> SemanticDetector:
    """The detector with the shipped model's veto for its language set to `veto`."""
    head = dataclasses.replace(bundled_model().head, vetoes={detector.pack.language: veto})
    return SemanticDetector(type(bundled_model())(head, bundled_model().encoder), detector.pack)


def test_model_overrules_a_rule_flag_on_a_line_it_reads_as_lawful(cn) -> None:
    assert cn.veto >= VETO_FLOOR, "the shipped veto is calibrated at or above its floor"
    assert [f.rule for f in RuleEngine(cn.pack).check("agent", NEGATION)] == ["cn.legal.false_threat"]

    def flags(veto: float, text: str) -> list[str]:
        return [f.rule for f in CallMonitor(RuleEngine(cn.pack), state=CallState(), model=with_veto(cn, veto))
                .check_all("agent", text)]

    assert flags(0.5, NEGATION) == []
    assert flags(2.0, NEGATION) == ["cn.legal.false_threat"], "a veto no score reaches overrules nothing"
    assert len(flags(0.5, "你等着，我明天就带几个兄弟去你家门口坐坐")) >= 2, "nor one the model reads as a violation"


def test_the_veto_is_calibrated_on_what_it_would_overrule(cn) -> None:
    threat = "你等着，我明天就带几个兄弟去你家门口坐坐"
    lawful = [({"ok": 0.96 - i / 100}, Example(NEGATION, "ok")) for i in range(7)]
    missed = ({"ok": 0.99}, Example(threat, "threat"))
    unflagged = ({"ok": 0.999}, Example("您好，请问是王先生吗？", "ok"))

    def calibrated(rows: list) -> float:
        return veto([s for s, _ in rows], [e for _, e in rows], RuleEngine(cn.pack))

    assert calibrated([missed, *lawful, unflagged]) == 0.9, "7 of 8 overruled lines lawful: the lowest such score"
    assert calibrated([missed, unflagged]) == 1.0, "overruling only a violation: no score reaches the veto"
    assert calibrated([({"ok": 0.5}, Example(NEGATION, "ok"))]) == VETO_FLOOR, "never below the floor"


async def test_check_rules_acts_only_on_flags_the_model_does_not_overrule(cn) -> None:
    negation, threat = (TranscriptFrame(leg="agent", text=text, final=True, start_s=0.0, end_s=2.0)
                        for text in (NEGATION, "你等着，我明天就带几个兄弟去你家门口坐坐"))
    monitor = CallMonitor(RuleEngine(cn.pack), state=CallState(), model=with_veto(cn, 0.5))
    with ThreadPoolExecutor(1) as executor:
        out = await run_stage(CheckRules(monitor, executor), [negation, threat])
    assert out[0] is negation and out[1] is threat, "nothing stands for the lawful line"
    assert sorted(f.flag.category for f in out if isinstance(f, ViolationFrame)) == ["gang", "threat"]
    assert all(not f.reason.startswith("false_legal") for f in out if isinstance(f, ActionFrame))


async def test_check_meaning_without_a_model_passes_frames_on() -> None:
    frame = TranscriptFrame(leg="agent", text=UNLISTED[0][0], final=True, start_s=0.0, end_s=1.0)
    monitor = CallMonitor(RuleEngine.from_pack("cn-collection"))
    with ThreadPoolExecutor(1) as executor:
        assert await run_stage(CheckMeaning(monitor, executor), [frame]) == [frame]
    await asyncio.sleep(0)


def test_damaged_or_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SemanticModelError, match="missing or damaged"):
        Head.load(tmp_path / "nothing")
    copy = tmp_path / "semantic"
    shutil.copytree(MODEL_DIR, copy)
    (copy / "head.npz").write_bytes(b"not an npz")
    with pytest.raises(SemanticModelError, match="retrain"):
        Head.load(copy)
    shutil.copytree(MODEL_DIR, copy, dirs_exist_ok=True)
    (copy / "ngrams.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(SemanticModelError, match="wrong shape"):
        Head.load(copy)


def test_pack_model_section_is_validated(tmp_path: Path) -> None:
    text = (Path(load_pack("cn-collection").path)).read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("    threat: critical\n", "    threat: dire\n", 1), encoding="utf-8")
    with pytest.raises(RulePackError, match=r"bad.yaml:\d+: model.categories.threat must be one of"):
        load_pack(bad)
    assert load_pack("cn-collection").model_categories["provocation"] == "high"


def test_labelled_files_are_checked_line_by_line(tmp_path: Path) -> None:
    good = tmp_path / "good.tsv"
    good.write_text("text\tcategory\tcontext\n# a comment\n你好\tok\t\n"
                    "欠款五千\tdisclosure_before_verification\tunverified\n", encoding="utf-8")
    assert read_examples(good) == [Example("你好", "ok", ""), Example("欠款五千", "disclosure_before_verification",
                                                                         "unverified")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tcategory\tcontext\n欠款五千\tpressing_after_dispute\tunverified\n", encoding="utf-8")
    with pytest.raises(LabelledDataError, match=r"bad.tsv:2: pressing_after_dispute is labelled only in context"):
        read_examples(bad)
    bad.write_text("text\tcategory\tcontext\n你好\tok\tsomewhere\n", encoding="utf-8")
    with pytest.raises(LabelledDataError, match=r"bad\.tsv:2"):
        read_examples(bad)


def test_context_copies_and_calibration() -> None:
    rows = [Example("a", "threat"), Example("b", "ok", "unverified"), Example("c", "ok")]
    index = augmented(rows)
    assert sorted(zip(index, with_contexts(rows, index), strict=True)) == [
        (0, ""), (0, "disputed"), (0, "third_party"), (0, "unverified"), (1, "third_party"), (1, "unverified"),
        (2, "")]
    assert lowest_threshold([(0.9, True), (0.8, True), (0.7, False), (0.6, True)], 0.97) == 0.8
    assert lowest_threshold([(0.9, False)], 0.97) == 1.0
    scores = [{"ok": 0.1, "threat": 0.9}, {"ok": 0.3, "threat": 0.7}, {"ok": 0.8, "threat": 0.2}]
    cut = calibrate(scores, [Example("x", "threat"), Example("y", "ok"), Example("z", "ok")], ["threat"])
    assert cut["threat"].act == 0.9


def test_text_is_cleaned_and_bounded_before_encoding() -> None:
    assert clean("  閣下　欠款  ") == "阁下 欠款"
    assert len(clean("很" * 5000)) == 400
    vectors = bundled_model().encoder.embed(["", "x" * 10000])
    assert vectors.shape == (2, 384) and np.all(np.isfinite(vectors))


async def test_a_final_after_a_stable_partial_is_read_from_near_its_end(cn) -> None:
    class Reads:
        """A monitor stand-in that notes what the model was given to read."""

        model = cn

        def __init__(self) -> None:
            self.texts: list[str] = []

        def check_meaning(self, leg: str, text: str) -> list:
            self.texts.append(text)
            return []

    head, tail = "您好这里是华信资产我们受银行委托联系您", "你女儿在实验小学三年级放学四点半"
    frames = [TranscriptFrame(leg="agent", text=head, final=False, start_s=0.0, end_s=1.0)] * 2
    frames.append(TranscriptFrame(leg="agent", text=head + tail, final=True, start_s=0.0, end_s=2.0))
    reads = Reads()
    with ThreadPoolExecutor(1) as executor:
        await run_stage(CheckMeaning(reads, executor), frames)
    assert reads.texts == [head, head[-16:] + tail]
