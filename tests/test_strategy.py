"""Collection strategies as data: bundled ones load, bad ones name their file and line, and the plan meets the
sources' minimum contacts over weeks of simulated time without the pack's gate ever refusing a planned dial."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from compliance_rules.pack import load_pack
from compliance_rules.timing import Attempt, pre_dial_check
from voicebot.campaigns.lifecycle import DebtStatus
from voicebot.campaigns.strategy import StrategyError, load_strategy

SHANGHAI = ZoneInfo("Asia/Shanghai")
ASSIGNED = datetime(2026, 11, 2, 9, 30, tzinfo=SHANGHAI)  # a Monday morning


def test_bundled_strategies_load_and_pick_the_script_by_days_overdue() -> None:
    cn = load_strategy("cn-standard")
    assert [cn.stage(d).script for d in (0, 12, 30, 31, 60, 61, 400)] == [
        "cn-early", "cn-early", "cn-early", "cn-middle", "cn-middle", "cn-late", "cn-late"]
    assert cn.tasks["hardship_plan"] == "hardship" and cn.pack == "cn-collection"
    assert load_strategy("us-standard").stage(45).script == "en-reminder"


@pytest.mark.parametrize(("body", "line", "reason"), [
    ("strategy: x\npack: p\nstages:\n  - {name: a, from_day: 0, to_day: 30, script: cn-early}\n"
     "  - {name: b, from_day: 40, script: cn-late}\n"
     "contacts: {first_within_hours: 2, minimum: [], remind_every_days: 3}\n", 5, "must start the day after a ends"),
    ("strategy: x\npack: p\nstages: [{name: a, from_day: 0, script: cn-early}]\n"
     "contacts: {first_within_hours: 2, minimum: [{attempts: 3, within_days: 7}, {attempts: 2, within_days: 15}]"
     ", remind_every_days: 3}\n", 4, "more attempts in more days"),
    ("strategy: x\npack: p\nstages: [{name: a, from_day: 0, script: cn-early}]\n"
     "contacts: {first_within_hours: 200, minimum: [], remind_every_days: 3}\n", 4, "first_within_hours"),
    ("strategy: x\npack: p\nstages: [{name: a, from_day: 0, script: cn-early}]\ncontacts: {first_within_hours: 2, "
     "minimum: [], remind_every_days: 3}\ntasks: {refused: jail}\n", 5, "tasks.refused must be one of"),
    ("strategy: x\npack: p\nstages: [{name: a, from_day: 0, script: cn-early}]\nspeed: fast\n", 4,
     "unknown field 'speed'"),
    ("strategy: x\npack: p\nstages:\n  - {name: a, from_day: 0, script: cn-earlyy}\n"
     "contacts: {first_within_hours: 2, minimum: [], remind_every_days: 3}\n", 4, "no bundled script"),
    ("strategy: x\n  pack: [\n", 2, "invalid YAML"),
])
def test_a_bad_strategy_names_its_file_and_line(tmp_path: Path, body: str, line: int, reason: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(StrategyError) as caught:
        load_strategy(path)
    assert (caught.value.line, caught.value.path) == (line, path) and reason in str(caught.value)


def simulate(strategy_name: str, pack_name: str, zone: ZoneInfo, days: int) -> list[datetime]:
    """Dial whenever the plan wants and the pack's gate allows, never answered, for `days` days."""
    strategy, pack = load_strategy(strategy_name), load_pack(pack_name)
    dials: list[datetime] = []
    now = ASSIGNED.astimezone(UTC)
    end = now + timedelta(days=days)
    while now < end:
        want = strategy.next_dial(DebtStatus(debt="d"), assigned_at=ASSIGNED, dials=dials)
        at = max(want, now)
        decision = pre_dial_check(pack, at, [str(zone)], [Attempt(d) for d in dials])
        if not decision.allowed:
            assert decision.next_allowed is not None
            now = decision.next_allowed
            continue
        dials.append(at)
        now = at + timedelta(minutes=1)
    return dials


@pytest.mark.parametrize(("strategy", "pack", "zone"), [("cn-standard", "cn-collection", SHANGHAI),
                                                         ("us-standard", "us-fdcpa-regf", ZoneInfo("America/Chicago"))])
def test_the_plan_meets_the_minimum_contacts_inside_every_window_and_cadence(strategy: str, pack: str,
                                                                            zone: ZoneInfo) -> None:
    dials = simulate(strategy, pack, zone, days=28)
    plan, rules = load_strategy(strategy), load_pack(pack)
    assert plan.contacts_met(assigned_at=ASSIGNED, dials=dials, now=ASSIGNED + timedelta(days=28)) == {
        "first": True, **{f"{t.attempts}_in_{t.within_days}d": True for t in plan.targets}}
    for i, at in enumerate(dials):  # every planned dial would have passed the gate as it was made
        assert pre_dial_check(rules, at, [str(zone)], [Attempt(d) for d in dials[:i]]).allowed
        assert rules.window.start <= at.astimezone(zone).time() <= rules.window.end
    gaps = [b - a for a, b in itertools.pairwise(dials)]
    assert min(gaps) >= timedelta(hours=4), "no burst of dials to reach a minimum"


def test_a_promise_is_reminded_the_day_before_and_a_broken_one_followed_up() -> None:
    strategy = load_strategy("cn-standard")
    promised = DebtStatus(debt="d", state="promised", promise_date=date(2026, 11, 10))
    remind = strategy.next_dial(promised, assigned_at=ASSIGNED, dials=[ASSIGNED])
    assert remind == datetime(2026, 11, 9, tzinfo=UTC)
    assert strategy.next_dial(promised, assigned_at=ASSIGNED, dials=[ASSIGNED, remind]) is None
    broken_at = datetime(2026, 11, 12, tzinfo=UTC)
    broken = DebtStatus(debt="d", state="promise_broken")
    assert strategy.next_dial(broken, assigned_at=ASSIGNED, dials=[remind], changed_at=broken_at) == (
        broken_at + timedelta(days=1))
    for stopped in ("disputed", "cease", "wrong_number", "paid", "closed"):
        assert strategy.next_dial(DebtStatus(debt="d", state=stopped), assigned_at=ASSIGNED, dials=[]) is None
