"""Accounts worked over weeks of simulated time under a strategy: minimum contacts, a stage change as days pass, a
promise reminded, broken and followed up, a dispute that stops dialling, and no dial the pack's gate would refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from test_campaign import Clock, ScriptedDialer, csv_text, load, row
from test_lifecycle import db  # noqa: F401 (the fixture)

from compliance_rules.pack import load_pack
from compliance_rules.timing import Attempt, pre_dial_check
from voicebot.campaigns import CallResult, CampaignRunner
from voicebot.campaigns.analytics import collection_report, report_csv
from voicebot.campaigns.strategy import load_strategy
from voicebot.campaigns.tasks import TaskBook

SHANGHAI = ZoneInfo("Asia/Shanghai")
ASSIGNED = datetime(2026, 11, 2, 9, 30, tzinfo=SHANGHAI)
DEBT = "示例银行/A1"


def answered(call_id: str, kind: str, **outcome: str) -> CallResult:
    return CallResult(status="answered", call_id=call_id, outcome={"kind": kind, **outcome})


async def test_four_weeks_of_one_debt_under_the_standard_strategy(db) -> None:  # noqa: F811
    store, audit, book = db
    clock = Clock(ASSIGNED.astimezone(UTC))
    load(store, csv_text(row("A1", days="25")), at=clock())
    promise_day = (ASSIGNED + timedelta(days=12)).date().isoformat()
    dialer = ScriptedDialer(clock, CallResult(status="no_answer"), CallResult(status="no_answer"),
                            CallResult(status="busy"), answered("c4", "promise_to_pay", ptp_date=promise_day,
                                                                ptp_amount="500"),
                            answered("c5", "answered"), answered("c6", "dispute"))
    pack, strategy = load_pack("cn-collection"), load_strategy("cn-standard")
    runner = CampaignRunner(store, dialer, pack, audit, now=clock, sleep=clock.sleep, book=book, strategy=strategy,
                            idle=timedelta(hours=6))
    await runner.run(until=ASSIGNED + timedelta(days=28))

    dials = [at for at, _ in dialer.calls]
    assert len(dials) == 6, "the dispute stopped dialling for the rest of the four weeks"
    assert strategy.contacts_met(assigned_at=ASSIGNED, dials=dials, now=clock()) == {
        "first": True, "3_in_7d": True, "5_in_15d": True}
    for i, at in enumerate(dials):
        assert pre_dial_check(pack, at, ["Asia/Shanghai"], [Attempt(d) for d in dials[:i]]).allowed
    assert [r.data for r in audit.records() if r.kind == "dial_attempt" and not r.data["allowed"]] == [], \
        "dials are planned inside calling hours and the cadence: the gate has nothing to refuse"
    stages = [(debt.stage, debt.script) for _, debt in dialer.calls]
    assert stages[0] == ("early", "cn-early") and stages[-1] == ("middle", "cn-middle"), \
        "25 days overdue at import, 31 and more two weeks on: the strategy's script for the stage"
    history = [(h["to_state"], h["cause"]) for h in book.history(DEBT)]
    assert [state for state, _ in history] == ["reminding", "promised", "promise_broken", "disputed"]
    reminder = dials[4].astimezone(SHANGHAI).date()
    assert reminder == (ASSIGNED + timedelta(days=11)).date(), "reminded the day before the promised date"
    broken_at = datetime.fromisoformat(book.history(DEBT)[2]["at"])
    assert timedelta(0) < dials[5] - broken_at <= timedelta(days=2), "followed up the day after it broke"
    assert book.status(DEBT).stopped

    report = collection_report(store, book, strategy, clock())
    assert (report["accounts"], report["dialled"], report["contact_rate"], report["right_party_contact_rate"],
            report["promise_rate"], report["kept_promise_rate"]) == (1, 1, 1.0, 1.0, 1.0, None)
    assert report["by_stage"]["middle"] == {"accounts": 1, "promised": "500.00", "collected": "0.00",
                                            "script": "cn-middle"}
    assert report["minimum_contacts"] == {"3_in_7d_met": 1, "5_in_15d_met": 1, "first_met": 1}
    assert report["disputes_and_cease_by_week"] == {"2026-W47": {"disputed": 1, "cease": 0}}
    assert "contact_rate,1.0" in report_csv(report)


async def test_calls_hand_hardship_and_late_broken_promises_to_people(db) -> None:  # noqa: F811
    store, audit, book = db
    clock = Clock(ASSIGNED.astimezone(UTC))
    load(store, csv_text(row("A1", days="70", agent="col1"), row("A2", days="10", phone="+8613912345679",
                                                                  agent="")), at=clock())
    promise_day = (ASSIGNED + timedelta(days=2)).date().isoformat()
    dialer = ScriptedDialer(clock, answered("c1", "promise_to_pay", ptp_date=promise_day, ptp_amount="300"),
                            answered("c2", "hardship_plan"), default=CallResult(status="no_answer"))
    runner = CampaignRunner(store, dialer, load_pack("cn-collection"), audit, now=clock, sleep=clock.sleep,
                            book=book, strategy=load_strategy("cn-standard"), idle=timedelta(hours=6))
    await runner.run(until=ASSIGNED + timedelta(days=6))
    tasks = TaskBook.open(store.target, audit)
    raised = {(t.account_id, t.kind, t.assignee, t.cause.split(":")[0]) for t in tasks.tasks()}
    assert raised == {("A1", "broken_promise", "col1", "lifecycle"), ("A2", "hardship", None, "call")}
    task_events = [(r.data["event"], r.data["kind"]) for r in audit.records() if r.kind == "task"]
    assert sorted(task_events) == [("raised", "broken_promise"), ("raised", "hardship")]
    tasks.close()
