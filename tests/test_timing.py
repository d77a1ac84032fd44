from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from compliance_rules.pack import load_pack
from compliance_rules.timing import Agreement, Attempt, CallClock, pre_dial_check, resolve_zones

CN = load_pack("cn-collection")
NY, LA, SH = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Shanghai")


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


@pytest.mark.parametrize(("hour", "minute", "allowed"), [
    (7, 59, False), (8, 0, True), (12, 30, True), (20, 59, True), (21, 0, False), (23, 15, False),
])
def test_window_in_the_debtors_local_time(hour: int, minute: int, allowed: bool):
    decision = pre_dial_check(CN, local(SH, 2026, 11, 23, hour, minute), ["Asia/Shanghai"])
    assert decision.allowed is allowed


def test_the_same_instant_differs_by_zone():
    at = local(SH, 2026, 11, 23, 20, 30)  # 20:30 in Shanghai is 07:30 in New York
    assert pre_dial_check(CN, at, ["Asia/Shanghai"]).allowed
    refused = pre_dial_check(CN, at, ["America/New_York"])
    assert not refused.allowed
    assert refused.next_allowed == local(NY, 2026, 11, 23, 8, 0)


def test_conflicting_zones_must_all_be_inside_the_window():
    at = local(NY, 2026, 11, 23, 8, 30)  # 05:30 in Los Angeles
    decision = pre_dial_check(CN, at, ["America/New_York", "America/Los_Angeles"])
    assert not decision.allowed
    assert decision.next_allowed == local(LA, 2026, 11, 23, 8, 0)
    assert "America/Los_Angeles" in decision.reasons[0]


@pytest.mark.parametrize("zone", [None, "", "Mars/Olympus_Mons"])
def test_unknown_zone_takes_the_strictest_reading(zone):
    assert resolve_zones([zone], CN.window) == ("Asia/Shanghai", "Asia/Urumqi")
    # 08:30 Beijing time is 06:30 by Urumqi solar reckoning: refused under the strictest reading
    assert not pre_dial_check(CN, local(SH, 2026, 11, 23, 8, 30), [zone]).allowed
    assert pre_dial_check(CN, local(SH, 2026, 11, 23, 11, 0), [zone]).allowed


def test_us_window_follows_daylight_saving_time(us_pack):
    # 2026-03-08: clocks in New York jump from 02:00 to 03:00
    before = local(NY, 2026, 3, 7, 8, 30).astimezone(UTC)   # 13:30 UTC, EST
    after = local(NY, 2026, 3, 9, 8, 30).astimezone(UTC)    # 12:30 UTC, EDT
    assert pre_dial_check(us_pack, before, ["America/New_York"]).allowed
    assert pre_dial_check(us_pack, after, ["America/New_York"]).allowed
    # 12:45 UTC was 07:45 EST before the change (refused) but 08:45 EDT after it (allowed)
    assert not pre_dial_check(us_pack, datetime(2026, 3, 7, 12, 45, tzinfo=UTC), ["America/New_York"]).allowed
    assert pre_dial_check(us_pack, datetime(2026, 3, 9, 12, 45, tzinfo=UTC), ["America/New_York"]).allowed
    # 2026-11-01: clocks fall back; 01:30 UTC on Nov 2 is 20:30 EST, inside; on Oct 31 it was 21:30 EDT
    assert pre_dial_check(us_pack, datetime(2026, 11, 2, 1, 30, tzinfo=UTC), ["America/New_York"]).allowed
    assert not pre_dial_check(us_pack, datetime(2026, 10, 31, 1, 30, tzinfo=UTC), ["America/New_York"]).allowed


def test_us_unknown_zone_must_suit_every_us_zone(us_pack):
    at = local(NY, 2026, 11, 23, 12, 0)  # 07:00 in Honolulu
    assert not pre_dial_check(us_pack, at, [None]).allowed
    assert pre_dial_check(us_pack, local(NY, 2026, 11, 23, 15, 0), [None]).allowed


def test_cadence_limits_over_rolling_windows():
    at = local(SH, 2026, 11, 23, 10, 0)
    three_today = [Attempt(at - timedelta(hours=h)) for h in (1, 2, 3)]
    decision = pre_dial_check(CN, at, ["Asia/Shanghai"], three_today)
    assert not decision.allowed
    assert "3 calls in the last 1 day" in decision.reasons[0]
    assert decision.next_allowed == local(SH, 2026, 11, 24, 8, 0)  # 07:00 frees a slot; the window opens at 8
    yesterday = [Attempt(at - timedelta(hours=h)) for h in (25, 26, 27)]
    assert pre_dial_check(CN, at, ["Asia/Shanghai"], yesterday).allowed


def test_us_seven_in_seven_days(us_pack):
    at = local(NY, 2026, 11, 23, 10, 0)
    six = [Attempt(at - timedelta(days=d, hours=1)) for d in range(6)]
    assert pre_dial_check(us_pack, at, ["America/New_York"], six).allowed
    seven = [*six, Attempt(at - timedelta(days=6, hours=5))]
    decision = pre_dial_check(us_pack, at, ["America/New_York"], seven)
    assert not decision.allowed
    assert "7 calls in the last 7 day(s)" in decision.reasons[0]
    old = [Attempt(at - timedelta(days=8 + d)) for d in range(7)]
    assert pre_dial_check(us_pack, at, ["America/New_York"], old).allowed


def test_us_no_call_within_seven_days_after_a_conversation(us_pack):
    at = local(NY, 2026, 11, 23, 10, 0)
    talked = [Attempt(at - timedelta(days=3), conversation=True)]
    decision = pre_dial_check(us_pack, at, ["America/New_York"], talked)
    assert not decision.allowed
    assert decision.next_allowed == at + timedelta(days=4)
    assert pre_dial_check(us_pack, at, ["America/New_York"], [Attempt(at - timedelta(days=3))]).allowed
    assert pre_dial_check(us_pack, at, ["America/New_York"],
                          [Attempt(at - timedelta(days=8), conversation=True)]).allowed


def test_agreed_callback_outside_the_window_is_allowed_with_its_evidence():
    at = local(SH, 2026, 11, 23, 21, 30)
    evidence = "audit#42 call c-7 at 12.3s"
    agreement = Agreement(local(SH, 2026, 11, 23, 21, 15), local(SH, 2026, 11, 23, 21, 45), evidence)
    assert not pre_dial_check(CN, at, ["Asia/Shanghai"]).allowed
    decision = pre_dial_check(CN, at, ["Asia/Shanghai"], agreement=agreement)
    assert decision.allowed
    assert decision.evidence == evidence
    assert not pre_dial_check(CN, at + timedelta(hours=1), ["Asia/Shanghai"], agreement=agreement).allowed


def test_agreed_callback_is_not_held_back_by_the_quiet_days_after_a_conversation(us_pack):
    at = local(NY, 2026, 11, 23, 18, 0)
    talked = [Attempt(at - timedelta(days=1), conversation=True)]
    agreement = Agreement(at - timedelta(minutes=5), at + timedelta(minutes=30), "audit#7 call c-1 at 40.2s")
    assert not pre_dial_check(us_pack, at, ["America/New_York"], talked).allowed
    decision = pre_dial_check(us_pack, at, ["America/New_York"], talked, agreement=agreement)
    assert decision.allowed and decision.evidence == agreement.evidence
    later = pre_dial_check(us_pack, at + timedelta(hours=1), ["America/New_York"], talked, agreement=agreement)
    assert not later.allowed, "only the agreed time is exempt"


def test_naive_dial_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        pre_dial_check(CN, datetime(2026, 11, 23, 10, 0), ["Asia/Shanghai"])


def test_live_call_is_warned_then_ended_at_nine():
    clock = CallClock(CN, local(SH, 2026, 11, 23, 20, 40), ["Asia/Shanghai"])
    assert clock.tick(local(SH, 2026, 11, 23, 20, 50)) == []
    [warn] = clock.tick(local(SH, 2026, 11, 23, 20, 55))
    assert warn.action == "warn" and warn.reason == "permitted calling hours end at 21:00 Asia/Shanghai"
    assert clock.tick(local(SH, 2026, 11, 23, 20, 58)) == []
    [end] = clock.tick(local(SH, 2026, 11, 23, 21, 0))
    assert end.action == "end_call"
    assert clock.tick(local(SH, 2026, 11, 23, 21, 5)) == []


def test_a_call_that_began_out_of_hours_says_the_hours_in_the_debtors_zone():
    clock = CallClock(CN, local(SH, 2026, 11, 23, 22, 48), ["Asia/Shanghai"])
    warn, end = clock.tick(local(SH, 2026, 11, 23, 22, 48))
    assert warn.reason == "the call began outside the permitted hours, 08:00–21:00 local time in Asia/Shanghai"
    hours = "08:00–21:00 local time in Asia/Shanghai"
    assert (end.action, end.reason) == ("end_call", f"outside the permitted hours, {hours}")


def test_live_call_under_an_agreement_runs_to_its_end():
    agreement = Agreement(local(SH, 2026, 11, 23, 20, 50), local(SH, 2026, 11, 23, 21, 30), "audit#7")
    clock = CallClock(CN, local(SH, 2026, 11, 23, 20, 55), ["Asia/Shanghai"], agreement)
    assert [e.action for e in clock.tick(local(SH, 2026, 11, 23, 21, 10))] == []
    assert [e.action for e in clock.tick(local(SH, 2026, 11, 23, 21, 30))] == ["warn", "end_call"]
