"""The reply head: what a customer's reply establishes (the debtor confirmed, a third party, a dispute) is read by the
model beside the rules' signals, moves the call state, and reaches the live pipeline as an audited signal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_pipeline import run_stage

from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import CallMonitor, RuleEngine
from compliance_rules.pack import load_pack
from compliance_rules.replies import RepliesDataError, bundled_replies, read_replies
from compliance_rules.semantic import SemanticModelError, bundled_model
from voicebot.frames import TranscriptFrame, ViolationFrame
from voicebot.stages.check_meaning import CheckMeaning

pytestmark = pytest.mark.model
DISPUTE = ("王先生，您这张卡目前欠款一万二千元。", "这卡我早就注销了，这钱根本不是我欠的，你们搞错人了")
"""An agent's line and a dispute no rule of the pack lists."""


@pytest.fixture(scope="module")
def cn() -> SemanticDetector:
    return SemanticDetector.for_pack(load_pack("cn-collection"))


def answer(detector: SemanticDetector, agent: str, customer: str) -> tuple[CallMonitor, list]:
    """A call where the agent says `agent` and the customer answers `customer`; the model's flags on the answer."""
    monitor = CallMonitor(RuleEngine(detector.pack), model=detector)
    monitor.check("agent", agent, final=True)
    monitor.check_meaning("agent", agent)
    monitor.check("customer", customer, final=True)
    return monitor, monitor.check_meaning("customer", customer)


def test_a_dispute_no_rule_lists_moves_the_call_to_disputed(cn) -> None:
    monitor, (flag,) = answer(cn, *DISPUTE)
    assert monitor.state.disputed
    assert (flag.category, flag.sets, flag.source) == ("signal", "disputed", "model")
    assert flag.rule == "model.signal.disputed"
    assert flag.model == bundled_replies().version and flag.matched == "" and flag.action == "log"


def test_the_model_reads_a_wife_on_the_phone_as_a_third_party(cn) -> None:
    monitor, flags = answer(cn, "请问是王建军先生吗？", "他是我老公，他上班去了，你有什么事跟我说")
    assert [f.sets for f in flags] == ["third_party"]
    assert monitor.state.third_party and not monitor.state.verified, "a disclosure now is one to a third party"


def test_yes_to_a_question_about_paying_verifies_no_one(cn) -> None:
    monitor, flags = answer(cn, "王先生，您看下周五能先还一部分吗？", "是")
    assert flags == [] and not monitor.state.verified


def test_pressing_on_after_a_dispute_only_the_model_heard_is_flagged(cn) -> None:
    monitor, _ = answer(cn, *DISPUTE)
    text = "你先把这笔钱还上，有什么问题还完再说"
    flags = monitor.check("agent", text, final=True) + monitor.check_meaning("agent", text)
    assert "pressing_after_dispute" in {f.category for f in flags}


async def test_the_live_stage_reads_customer_finals_for_the_state(cn) -> None:
    monitor = CallMonitor(RuleEngine(cn.pack), model=cn)
    monitor.check("agent", DISPUTE[0], final=True)
    reply = DISPUTE[1]
    partial = TranscriptFrame(leg="customer", text=reply[:8], final=False, start_s=0.0, end_s=1.0)
    final = TranscriptFrame(leg="customer", text=reply, final=True, start_s=0.0, end_s=2.0)
    monitor.check("customer", reply, final=True)
    with ThreadPoolExecutor(1) as executor:
        out = await run_stage(CheckMeaning(monitor, executor), [partial, final])
    signals = [f.flag for f in out if isinstance(f, ViolationFrame)]
    assert [(s.sets, s.source) for s in signals] == [("disputed", "model")] and monitor.state.disputed


def test_bad_reply_data_and_an_uncalibrated_language_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "replies.tsv"
    bad.write_text("agent\ttext\tcategory\n请问是王先生吗？\t是我\tconfirmed\n", encoding="utf-8")
    with pytest.raises(RepliesDataError, match=r"replies.tsv:2: .*category"):
        read_replies(bad)
    pack = load_pack("cn-collection")
    with pytest.raises(SemanticModelError, match="no thresholds for language 'fr'"):
        SemanticDetector(bundled_model(), type(pack)(**{**{f: getattr(pack, f) for f in pack.__dataclass_fields__},
                                                        "language": "fr"}))
