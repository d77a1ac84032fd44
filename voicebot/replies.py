"""What customers say that the dialog reads itself: ID digits, times of day, yes and no, a wrong number."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import cn2an

from voicebot.nlu import Understanding

CALLBACK_SOON = timedelta(hours=2)
CALLBACK_CLOCK = time(10, 0)
"""When a callback day is named without a time."""


_DIGIT_CHARS = str.maketrans("零〇一二三四五六七八九幺两叉xX*", "0012345678912XXXX")
_EN_DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
              "seven": "7", "eight": "8", "nine": "9"}
_EN_WORD = re.compile(r"\b(" + "|".join(_EN_DIGITS) + r")\b", re.IGNORECASE)
_LAST4 = re.compile(r"[0-9]{3}[0-9X]")


def parse_digits(text: str, language: str) -> str | None:
    """The last four ID digits in key presses or speech ("1234", "幺二三四", "一千二百三十四", "one two 3 4")."""
    spoken = _EN_WORD.sub(lambda m: _EN_DIGITS[m.group(1).lower()], text) if language == "en" else text
    for candidate in (spoken.translate(_DIGIT_CHARS), cn2an.transform(spoken, "cn2an") if language == "zh" else ""):
        runs = [r[-4:] for r in re.findall(r"[0-9X]+", re.sub(r"[\s,，、.。-]", "", candidate)) if len(r) >= 4]
        runs = [r for r in runs if _LAST4.fullmatch(r)]
        if runs:
            return runs[-1]
    return None


_ZH_NUM = "零一二两三四五六七八九十"
_ZH_CLOCK = re.compile(rf"(凌晨|早上|早晨|上午|中午|下午|傍晚|晚上|夜里|今晚|明晚)?(?<![快慢多少好早晚大小差有再])"
                       rf"([0-9]{{1,2}}|[{_ZH_NUM}]{{1,3}})(?:点|时|:|：)(半|[0-9]{{1,2}}|[{_ZH_NUM}]{{1,3}})?"
                       rf"(?![0-9{_ZH_NUM}]*[万千百元块点])")
_ZH_PM = ("下午", "傍晚", "晚上", "夜里", "今晚", "明晚")
_EN_HOURS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
             "ten": 10, "eleven": 11, "twelve": 12}
_EN_HOUR = r"(\d{1,2}|" + "|".join(_EN_HOURS) + ")"
_EN_CLOCK = re.compile(rf"\b{_EN_HOUR}(?::(\d{{2}}))?\s*(a\.?\s?m\b\.?|p\.?\s?m\b\.?|o'?clock)", re.IGNORECASE)
_EN_AT = re.compile(rf"\bat\s+{_EN_HOUR}(?::(\d{{2}}))?\b()", re.IGNORECASE)


def parse_clock(text: str, language: str) -> time | None:
    """A time of day a customer names ("下午三点半", "晚上10点", "at 3:30 pm"); a bare 1–7 o'clock is afternoon."""
    if language == "zh":
        m = _ZH_CLOCK.search(text)
        if not m:
            return None
        period, hour, minute = m.group(1) or "", _zh_number(m.group(2)), m.group(3)
        minutes = 30 if minute == "半" else (_zh_number(minute) if minute else 0)
        marker = "pm" if period in _ZH_PM or (period == "中午" and (hour or 0) < 6) else "am" if period else ""
    else:
        m = _EN_CLOCK.search(text) or _EN_AT.search(text)
        if not m:
            return time(12, 0) if re.search(r"\bnoon\b", text, re.IGNORECASE) else None
        word = m.group(1).lower()
        hour, minutes = _EN_HOURS.get(word) or int(word), int(m.group(2) or 0)
        marker = (m.group(3) or "").lower()[:1].replace("a", "am").replace("p", "pm").replace("o", "")
    if hour is None or minutes is None or hour > 24 or minutes > 59:
        return None
    if marker == "pm" and hour < 12:
        hour += 12
    elif marker == "am" and hour == 12:
        hour = 0
    elif not marker and 1 <= hour <= 7:
        hour += 12
    return time(hour % 24, minutes)


def _zh_number(text: str) -> int | None:
    try:
        return int(text) if text.isdigit() else int(cn2an.cn2an(text, "smart"))
    except (ValueError, KeyError):
        return None


def callback_at(now: datetime, zone: ZoneInfo, day: date | None, clock: time | None) -> datetime:
    """When a customer asked to be called back: the day and time named, 10:00 on a later day, else in two hours."""
    local_now = now.astimezone(zone)
    soon = _round_up(local_now + CALLBACK_SOON)
    if clock is None:
        return datetime.combine(day, CALLBACK_CLOCK, zone) if day and day > local_now.date() else soon
    at = datetime.combine(day or local_now.date(), clock, zone)
    if at <= local_now:
        at = at + timedelta(days=1) if day is None else soon
    return at


def _round_up(at: datetime, minutes: int = 30) -> datetime:
    exact = at.replace(second=0, microsecond=0)
    if exact < at:
        exact += timedelta(minutes=1)
    return exact + timedelta(minutes=-exact.minute % minutes)


_YES = {"zh": ("好", "可以", "行", "要", "是", "对", "嗯", "麻烦", "需要", "转"),
        "en": ("yes", "yeah", "yep", "sure", "ok", "okay", "please", "fine", "alright", "that works")}
_NO = {"zh": ("不", "别", "没必要", "算了", "免了"), "en": ("no", "nope", "not", "don't", "dont", "never")}
_WRONG_NUMBER = {"zh": ("打错", "不认识", "没有这个人", "没这个人", "查无此人"),
                 "en": ("wrong number", "don't know him", "don't know her", "don't know who", "no one by that name",
                        "nobody by that name", "never heard of")}


def affirmative(heard: Understanding, language: str) -> bool:
    """A yes to a yes-or-no question: a refusal or any "no" word is a no; unclear is a no."""
    if heard.intent == "refusal":
        return False
    text = heard.text.lower()
    words = set(re.findall(r"[a-z']+", text)) if language == "en" else set()
    if any((w in words) if language == "en" else (w in text) for w in _NO[language]):
        return False
    return heard.intent == "identity_confirmed" or any(w in text for w in _YES[language])


def wrong_number(text: str) -> bool:
    """Whether a wrong-person reply says the debtor is unknown here (not just away)."""
    lowered = text.lower()
    return any(cue in lowered for lang in _WRONG_NUMBER.values() for cue in lang)
