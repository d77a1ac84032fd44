"""Slot extraction: dates and amounts in customer replies, normalised against a fixed today."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.nlu import Slots
from voicebot.nlu.slots import add_months, day_of_month, extract_slots

TODAY = date(2025, 3, 12)  # a Wednesday


@pytest.mark.parametrize(("text", "expected"), [
    ("我下周五还", date(2025, 3, 21)),
    ("周五吧", date(2025, 3, 14)),
    ("周一还", date(2025, 3, 17)),  # this week's Monday is past: next Monday
    ("这周六之前还上", date(2025, 3, 15)),
    ("星期天", date(2025, 3, 16)),
    ("下礼拜二我还", date(2025, 3, 18)),
    ("下下周三", date(2025, 3, 26)),
    ("明天", date(2025, 3, 13)),
    ("后天", date(2025, 3, 14)),
    ("大后天", date(2025, 3, 15)),
    ("月底", date(2025, 3, 31)),
    ("这个月底之前还清", date(2025, 3, 31)),
    ("下个月底", date(2025, 4, 30)),
    ("下个月五号", date(2025, 4, 5)),
    ("我下个月5号发工资", date(2025, 4, 5)),
    ("二十号", date(2025, 3, 20)),
    ("15号", date(2025, 3, 15)),
    ("十号", date(2025, 4, 10)),  # already past this month: next month
    ("三天后", date(2025, 3, 15)),
    ("两三天后", date(2025, 3, 15)),
    ("过两天", date(2025, 3, 14)),
    ("下周", date(2025, 3, 17)),
    ("月中", date(2025, 3, 15)),
    ("半个月后", date(2025, 3, 27)),
    ("两个星期后", date(2025, 3, 26)),
    ("12月31号", date(2025, 12, 31)),
    ("3月1号", date(2026, 3, 1)),
    ("这个月五号", date(2025, 4, 5)),
    ("今天不行 明天吧", date(2025, 3, 13)),  # the reply corrects itself: the last date counts
    ("tomorrow", date(2025, 3, 13)),
    ("next friday", date(2025, 3, 21)),
    ("by the end of the month", date(2025, 3, 31)),
    ("i can pay on the 15th", date(2025, 3, 15)),
    ("I'll pay the whole thing Friday, December 11th.", date(2025, 12, 11)),
    ("put me down for the twenty second of march", date(2025, 3, 22)),
    ("march third", date(2026, 3, 3)),  # already past this year: next year's
    ("i will do it on the tenth", date(2025, 4, 10)),
    ("the first of the month", date(2025, 4, 1)),
    ("call me this evening", date(2025, 3, 12)),
    ("friday no wait monday", date(2025, 3, 17)),
    ("我不还", None),
    ("晚上七点以后再打", None),
])
def test_dates(text: str, expected: date | None) -> None:
    assert extract_slots(text, TODAY).date == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("两千块", "2000"),
    ("一千二百元", "1200"),
    ("3000", "3000"),
    ("三千二", "3200"),
    ("两千五百块钱", "2500"),
    ("一万", "10000"),
    ("1.5万", "15000"),
    ("今天下午我就去还一千五", "1500"),
    ("一万块我下个月十五号还", "10000"),
    ("先还八百 剩下的月底", "800"),
    ("1,000元", "1000"),
    ("i can pay 200 dollars", "200"),
    ("I can pay $150.50 on the 15th.", "150.50"),
    ("a hundred and fifty on monday", "150"),
    ("i'll send fifty dollars tomorrow", "50"),
    ("the last four are four five one eight", None),
    ("身份证后四位是三七二一", None),
    ("能不能分十二期", None),
    ("晚上七点以后再打", None),
    ("一分钱都没有", None),
    ("下个月五号", None),
])
def test_amounts(text: str, expected: str | None) -> None:
    assert extract_slots(text, TODAY).amount == (Decimal(expected) if expected else None)


def test_promise_names_both_date_and_amount() -> None:
    assert extract_slots("我下周五还两千块", TODAY) == Slots(date=date(2025, 3, 21), amount=Decimal(2000))


def test_month_arithmetic_clamps_to_the_months_end() -> None:
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert day_of_month(30, date(2025, 2, 10)) == date(2025, 2, 28)
    assert extract_slots("下个月底", date(2025, 1, 31)).date == date(2025, 2, 28)
    assert extract_slots("下个月五号", date(2025, 12, 20)).date == date(2026, 1, 5)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.dates(min_value=date(1990, 1, 1), max_value=date(2200, 12, 31)))
def test_never_raises_on_arbitrary_text(text: str, today: date) -> None:
    slots = extract_slots(text, today)
    assert slots.date is None or slots.date >= today - timedelta(days=6)  # only "这周一" can name a past day
    assert slots.amount is None or slots.amount > 0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="今明后天下周个月底号日一二三四五六七八九十两百千万块元钱还过0123456789 .", max_size=30))
def test_never_raises_on_date_and_number_words(text: str) -> None:
    extract_slots(text, TODAY)
