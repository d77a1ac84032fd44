"""Slots in a customer's reply: the date and the amount a promise names, normalised against today's date."""

from __future__ import annotations

import calendar
import re
import warnings
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

import cn2an
from text_to_num import alpha2digit

from voicebot.nlu import Slots

WEEKDAYS = {"1": 0, "一": 0, "2": 1, "二": 1, "3": 2, "三": 2, "4": 3, "四": 3, "5": 4, "五": 4,
            "6": 5, "六": 5, "7": 6, "日": 6, "天": 6, "末": 5}
EN_WEEKDAYS = {name: i for i, name in enumerate(
    ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
EN_MONTHS = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(?:uary|ruary|ch|il|e|y|ust|t?ember|ober|ember)?\.?"
EN_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
CJK = re.compile(r"[\u3400-\u9fff]")
RANGE = re.compile(r"[一两二三四五六七八九]([两二三四五六七八九十])(?=天|个?月|个?星期|个?礼拜|周)")
NUMBER = r"(\d+(?:\.\d+)?)"
MONEY_UNIT = r"(万)?\s*(?:多|来|左右)?\s*(块钱|块|元|圆|人民币|rmb|dollars?|bucks)"
NOT_MONEY_AFTER = re.compile(r"\s*(?:[号日月点天期年周个次位楼岁分%:：.]|小时|星期|礼拜|钟)")
NOT_MONEY_BEFORE = re.compile(r"(?:周|星期|礼拜|(?:后\d?位|尾号|号码|卡号|身份证)是?|第)\s*$")
PAY_VERB = re.compile(r"(?:还|转|付|打|交|凑|给|存|pay|send)\s*(?:了|个|上|过去|你|你们)?\s*$")


def extract_slots(text: str, today: date) -> Slots:
    """The date and amount `text` names, relative to `today`; either is None when absent or unclear."""
    plain = to_digits(text)
    return Slots(date=parse_date(plain, today), amount=parse_amount(plain))


def to_digits(text: str) -> str:
    """Lower-cased text with numerals written as digits: Chinese ("两千五" → "2500", unchanged if cn2an fails) or
    English ("a hundred and fifty" → "150", "the tenth" → "the 10th", "$75" → "75 dollars")."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", RANGE.sub(r"\1", text.lower())).replace("半个月", "十五天")
    if not CJK.search(text):
        return re.sub(r"\$\s*(\d+(?:\.\d+)?)", r"\1 dollars", alpha2digit(text, "en"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cn2an warns on every fragment it cannot read
        try:
            return cn2an.transform(text, "cn2an")
        except Exception:  # a third-party parser's failure must not lose the reply; keep the text as it was
            return text


def parse_date(text: str, today: date) -> date | None:
    """The last date expression in digit-normalised text (replies correct themselves: "今天不行 明天吧"), as a date."""
    found: list[tuple[int, int, date]] = []
    taken: list[range] = []
    for pattern, resolve in DATE_RULES:
        for m in pattern.finditer(text):
            if any(m.start() in span or m.end() - 1 in span for span in taken):
                continue
            try:
                when = resolve(m, today)
            except (ValueError, OverflowError):
                when = None
            if when is not None:
                found.append((m.start(), len(found), when))
                taken.append(range(m.start(), m.end()))
    return max(found)[2] if found else None


def parse_amount(text: str) -> Decimal | None:
    """The amount of money in digit-normalised text: with a money unit, else after a pay verb, else a lone number."""
    with_unit = re.search(NUMBER + r"\s*" + MONEY_UNIT, text)
    if with_unit:
        return _money(with_unit.group(1), with_unit.group(2))
    candidates = []
    for m in re.finditer(NUMBER + r"\s*(万)?", text):
        before, after = text[: m.start()], text[m.end():]
        if NOT_MONEY_AFTER.match(after) or NOT_MONEY_BEFORE.search(before) or re.match(r"\d", after):
            continue
        candidates.append((bool(PAY_VERB.search(before)), m))
    for paid, m in sorted(candidates, key=lambda c: not c[0]):
        value = _money(m.group(1), m.group(2))
        if value is not None and (paid or value >= 100 or text.strip() == m.group(0).strip()):
            return value
    return None


def _money(number: str, wan: str | None) -> Decimal | None:
    try:
        value = Decimal(number) * (10000 if wan else 1)
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0 or value > Decimal("1e9"):
        return None
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def end_of_month(year: int, month: int) -> date:
    """The last day of a month."""
    return date(year, month, calendar.monthrange(year, month)[1])


def add_months(day: date, months: int, day_of_month: int | None = None) -> date:
    """`day` moved by whole months, on `day_of_month` (default: the same day), clamped to the month's end."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day_of_month or day.day, last))


def day_of_month(day: int, today: date) -> date | None:
    """The next date with this day of the month: this month, or next month when it is already past."""
    if not 1 <= day <= 31:
        return None
    if day >= today.day:
        return add_months(today, 0, day)
    return add_months(today, 1, day)


def weekday_date(prefix: str, weekday: int, today: date) -> date:
    """The date of a weekday: this week's (or next week's once past), or in the week `prefix` names."""
    monday = today - timedelta(days=today.weekday())
    weeks = {"下下": 2, "下": 1, "这": 0, "本": 0}.get(prefix)
    if weeks is None:
        weeks = 0 if weekday >= today.weekday() else 1
    return monday + timedelta(weeks=weeks, days=weekday)


def _month_day(m: re.Match[str], today: date) -> date | None:
    return _month_day_of(int(m.group(1)), int(m.group(2)), today)


def _month_day_of(month: int, day: int, today: date) -> date | None:
    """The next date with this month and day: this year's, or next year's once past."""
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(today.year, month)[1]:
        return None
    when = date(today.year, month, day)
    return when if when >= today else date(today.year + 1, month, min(day, calendar.monthrange(today.year + 1,
                                                                                            month)[1]))


def _month_end(m: re.Match[str], today: date) -> date:
    shifted = add_months(today, 1 if m.group(1) else 0, 1)
    return end_of_month(shifted.year, shifted.month)


def _in_days(days: int) -> Callable[[re.Match[str], date], date]:
    return lambda m, today: today + timedelta(days=days)


def _en_day(m: re.Match[str], today: date) -> date | None:
    return day_of_month(int(m.group(1)), today)


def _en_month_day(m: re.Match[str], today: date) -> date | None:
    return _month_day_of(EN_MONTH_NAMES.index(m.group(1)) + 1, int(m.group(2)), today)


def _en_day_month(m: re.Match[str], today: date) -> date | None:
    return _month_day_of(EN_MONTH_NAMES.index(m.group(2)) + 1, int(m.group(1)), today)


def _en_weekday(m: re.Match[str], today: date) -> date:
    return weekday_date("下" if m.group(1) else "", EN_WEEKDAYS[m.group(2)], today)


DATE_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], date], date | None]]] = [
    (re.compile(r"(?<![\d.])(\d{1,2})\s*月\s*(\d{1,2})\s*[号日]"), _month_day),
    (re.compile(r"下\s*个?\s*月\s*(\d{1,2})\s*[号日]"),
     lambda m, today: add_months(today, 1, int(m.group(1))) if 1 <= int(m.group(1)) <= 31 else None),
    (re.compile(r"(?:这|本)\s*个?\s*月\s*(\d{1,2})\s*[号日]"),
     lambda m, today: day_of_month(int(m.group(1)), today)),
    (re.compile(r"(?<![\d.])(\d{1,2})\s*[号日]"), lambda m, today: day_of_month(int(m.group(1)), today)),
    (re.compile(r"(下\s*个?\s*)?月\s*[底末]"), _month_end),
    (re.compile(r"(?:这|本)\s*个?\s*月\s*[底末]"), lambda m, today: end_of_month(today.year, today.month)),
    (re.compile(r"下\s*个?\s*月\s*初"), lambda m, today: add_months(today, 1, 1)),
    (re.compile(r"月\s*初"), lambda m, today: today if today.day == 1 else add_months(today, 1, 1)),
    (re.compile(r"月\s*中"), lambda m, today: day_of_month(15, today)),
    (re.compile(r"年\s*[底末]"), lambda m, today: date(today.year, 12, 31)),
    (re.compile(r"(下下|下|这|本)?\s*个?\s*(?:周|星期|礼拜)\s*([1-7一二三四五六日天末])"),
     lambda m, today: weekday_date(m.group(1) or "", WEEKDAYS[m.group(2)], today)),
    (re.compile(r"(下下|下)\s*个?\s*(?:周|星期|礼拜)"),
     lambda m, today: weekday_date(m.group(1), 0, today)),
    (re.compile(r"(?:这|本)\s*个?\s*(?:周|星期|礼拜)"), lambda m, today: weekday_date("这", 6, today)),
    (re.compile(r"(?<![\d.])(\d{1,3})\s*(?:个)?\s*(?:周|星期|礼拜)\s*(?:后|以后|之后)"),
     lambda m, today: today + timedelta(weeks=int(m.group(1)))),
    (re.compile(r"(?<![\d.])(\d{1,2})\s*个\s*月\s*(?:后|以后|之后)"),
     lambda m, today: add_months(today, int(m.group(1)))),
    (re.compile(r"(?<![\d.])(\d{1,3})\s*天\s*(?:后|以后|之后|内|之内)"),
     lambda m, today: today + timedelta(days=int(m.group(1)))),
    (re.compile(r"(?:过|这|再过)\s*(\d{1,3})\s*天"), lambda m, today: today + timedelta(days=int(m.group(1)))),
    (re.compile(r"过\s*几\s*天"), _in_days(3)),
    (re.compile(r"大\s*后\s*天"), _in_days(3)),
    (re.compile(r"后\s*天"), _in_days(2)),
    (re.compile(r"明\s*[天儿早晚]|明\s*日"), _in_days(1)),
    (re.compile(r"今\s*[天儿早晚]|今\s*日|马上|立刻"), _in_days(0)),
    (re.compile(r"end of (?:the |this )?month"), lambda m, today: end_of_month(today.year, today.month)),
    (re.compile(r"end of next month"), _month_end),
    (re.compile(EN_MONTHS + r"\s+(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)?(?!\d)"), _en_month_day),
    (re.compile(r"(?<![\d.])(\d{1,2})(?:st|nd|rd|th)? of " + EN_MONTHS), _en_day_month),
    (re.compile(r"(?<![\d.])(\d{1,2})(?:st|nd|rd|th)"), _en_day),
    (re.compile(r"the first(?! thing)"), lambda m, today: day_of_month(1, today)),
    (re.compile(r"(next )?(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"), _en_weekday),
    (re.compile(r"next week"), lambda m, today: weekday_date("下", 0, today)),
    (re.compile(r"in (\d{1,3}) days"), lambda m, today: today + timedelta(days=int(m.group(1)))),
    (re.compile(r"day after tomorrow"), _in_days(2)),
    (re.compile(r"tomorrow"), _in_days(1)),
    (re.compile(r"today|tonight|right now|this (?:morning|afternoon|evening)"), _in_days(0)),
]
