"""The live board: which events alert a supervisor, acknowledgements, and the day's ended calls and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voicebot.board import ENDED_KEPT, CallBoard, UnknownAlertError, alert_kind


@pytest.mark.parametrize(("event", "kind"), [
    ({"type": "flag", "severity": "critical", "rule": "cn.threat.gang", "signal": False}, "violation"),
    ({"type": "flag", "severity": "high", "rule": "cn.insult.personal", "signal": False}, "violation"),
    ({"type": "flag", "severity": "medium", "rule": "r", "signal": False}, None),
    ({"type": "flag", "severity": "medium", "rule": "cn.signal.dispute", "signal": True, "action": "alert"}, "signal"),
    ({"type": "flag", "severity": "info", "rule": "cn.signal.identity_answer", "signal": True, "action": "log"}, None),
    ({"type": "flag", "severity": "critical", "rule": "window.outside_hours", "signal": False}, None),
    ({"type": "action", "action": "hangup", "rule": "window.outside_hours", "reason": "hours end"}, "out_of_hours"),
    ({"type": "action", "action": "hangup", "rule": "cn.threat.gang"}, None),
    ({"type": "error", "stage": "audit", "error": "disk full", "fatal": True}, "fail_safe"),
    ({"type": "error", "stage": "asr", "error": "x", "fatal": False}, None),
    ({"type": "final", "leg": "agent", "text": "你好"}, None),
])
def test_alert_kinds(event, kind) -> None:
    assert alert_kind(event) == kind


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_alerts_follow_their_events_and_the_first_acknowledgement_stands() -> None:
    board = CallBoard(now=Clock())
    heard = board.listen(maxsize=0)
    board.publish({"call_id": "c1", "type": "flag", "leg": "customer", "rule": "cn.signal.dispute",
                   "category": "signal", "severity": "medium", "matched": "金额不对", "signal": True,
                   "action": "alert", "audio_s": 3.0})
    board.publish({"call_id": "c1", "type": "error", "stage": "audit", "error": "the audit log cannot be written",
                   "fatal": True})
    sent = [heard.get_nowait() for _ in range(heard.qsize())]
    assert [e["type"] for e in sent] == ["flag", "alert", "error", "alert"]
    dispute, fail_safe = sent[1], sent[3]
    assert (dispute["kind"], dispute["severity"], dispute["words"]) == ("signal", "medium", "金额不对")
    assert (fail_safe["kind"], fail_safe["severity"]) == ("fail_safe", "critical")
    board.acknowledge(dispute["id"], "sup")
    board.acknowledge(dispute["id"], "other")
    assert board.alerts[dispute["id"]]["acked_by"] == "sup"
    assert [e["type"] for e in [heard.get_nowait() for _ in range(heard.qsize())]] == ["alert_ack"]
    with pytest.raises(UnknownAlertError):
        board.acknowledge(999, "sup")


def test_ended_calls_are_kept_for_a_day_and_at_most_a_bounded_number() -> None:
    clock = Clock()
    board = CallBoard(now=clock)
    board.keep_ended({"call_id": "old", "events": []})
    clock.now += timedelta(hours=25)
    for i in range(ENDED_KEPT + 1):
        board.keep_ended({"call_id": f"c{i}", "events": [{"type": "final", "text": "x"}]})
    assert "old" not in board.ended and "c0" not in board.ended and len(board.ended) == ENDED_KEPT
    assert board.call(f"c{ENDED_KEPT}")["events"] == [{"type": "final", "text": "x"}]
    assert board.call("nope") is None
