"""The dialog manager with the bundled scripts and real rule packs, on a fixed clock: every branch, line by line."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance_rules.engine import CallState, RuleEngine
from scripts_library import Script, load_script
from scripts_library.load import STATES
from voicebot.dialog import MAX_TURNS, Dialog
from voicebot.dialog_data import Account, AccountError, BotLine, Caller, DialogError
from voicebot.nlu import INTENTS, Slots, Understanding
from voicebot.replies import affirmative, callback_at, parse_clock, parse_digits, wrong_number

SH, NY = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
MONDAY_10AM = datetime(2026, 5, 18, 10, 0, tzinfo=SH)
FRIDAY, MONTH_END, TUESDAY = date(2026, 5, 22), date(2026, 5, 31), date(2026, 5, 19)
CN_ACCOUNT = Account(name="李娜", id_last4="3302", amount=Decimal("3260.50"), due_date=date(2026, 4, 20),
                     lender="示例银行", days_overdue=28, zones=("Asia/Shanghai",))
EN_ACCOUNT = Account(name="Jordan Lee", id_last4="4821", amount=Decimal("812.40"), due_date=date(2026, 4, 1),
                     lender="Example Bank", days_overdue=47, zones=("America/New_York",))
CN_CALLER = Caller(company="示例信息服务有限公司", agent_id="A017")
EN_CALLER = Caller(company="Example Recovery Services", agent_id="A017")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass(frozen=True)
class Say:
    """A customer reply as the NLU understood it."""

    text: str
    intent: str
    day: date | None = None
    amount: int | None = None
    confidence: float = 0.9

    def understanding(self) -> Understanding:
        amount = Decimal(self.amount) if self.amount is not None else None
        return Understanding(self.text, self.intent, self.confidence,  # type: ignore[arg-type]
                             Slots(date=self.day, amount=amount))


@dataclass(frozen=True)
class Keys:
    """Key presses."""

    keys: str


@dataclass(frozen=True)
class Quiet:
    """A turn of silence."""


@dataclass(frozen=True)
class Wait:
    """Time passes, then the clock ticks."""

    seconds: float


Event = Say | Keys | Quiet | Wait


def act(dialog: Dialog, clock: Clock, event: Event) -> list[BotLine]:
    if isinstance(event, Say):
        return dialog.hear(event.understanding())
    if isinstance(event, Keys):
        return dialog.digits(event.keys)
    if isinstance(event, Quiet):
        return dialog.silence()
    clock.at += timedelta(seconds=event.seconds)
    return dialog.tick()


@dataclass
class Call:
    """A dialog driven through events; every line said is kept with the call state it was said in."""

    script: str = "cn-early"
    account: Account = CN_ACCOUNT
    options: dict[str, Any] = field(default_factory=dict)
    said: list[tuple[BotLine, CallState]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = Clock(MONDAY_10AM if self.script != "en-reminder" else datetime(2026, 5, 18, 10, tzinfo=NY))
        caller = EN_CALLER if self.script == "en-reminder" else CN_CALLER
        self.dialog = Dialog(load_script(self.script), self.account, caller=caller, now=self.clock, **self.options)
        self.opening = self._keep(self.dialog.start())

    def _keep(self, lines: list[BotLine]) -> list[str]:
        self.said.extend((line, self.dialog.state) for line in lines)
        return [line.line_id for line in lines]

    def play(self, events: list[Event]) -> list[list[str]]:
        return [self._keep(act(self.dialog, self.clock, event)) for event in events]


YES = Say("对，我就是", "identity_confirmed")
VERIFY = [YES, Keys("3302")]
VERIFIED = [["ask_id_digits"], ["verified_disclosure", "ask_payment"]]
BYE = "goodbye"

# (case, script options, events, line ids said per event, outcome fields)
CASES: list[tuple[str, dict[str, Any], list[Event], list[list[str]], dict[str, Any]]] = [
    ("promise with date and amount", {}, [*VERIFY, Say("下周五还两千", "promise_to_pay", FRIDAY, 2000)],
     [*VERIFIED, ["confirm_promise", BYE]],
     {"kind": "promise_to_pay", "promise_date": FRIDAY, "promise_amount": Decimal("2000.00")}),
    ("promise asks once for date and amount", {},
     [*VERIFY, Say("我会还的", "promise_to_pay"), Say("月底吧", "other", MONTH_END),
      Say("一千二百元", "other", None, 1200)],
     [*VERIFIED, ["ask_date"], ["ask_amount"], ["confirm_promise", BYE]],
     {"kind": "promise_to_pay", "promise_date": MONTH_END, "promise_amount": Decimal("1200.00"), "notes": ()}),
    ("promise without a date after asking once", {},
     [*VERIFY, Say("先还五百", "promise_to_pay", None, 500), Say("还没想好", "other")],
     [*VERIFIED, ["ask_date"], ["promise_noted", BYE]],
     {"kind": "promise_to_pay", "promise_date": None, "promise_amount": Decimal("500.00"),
      "notes": ("no date given",)}),
    ("promise without an amount assumes the balance", {},
     [*VERIFY, Say("二十号还", "promise_to_pay", date(2026, 5, 20)), Say("不知道", "other")],
     [*VERIFIED, ["ask_amount"], ["confirm_promise", BYE]],
     {"kind": "promise_to_pay", "promise_amount": Decimal("3260.50"),
      "notes": ("amount not given: the full balance assumed",)}),
    ("a past promise date is not taken", {},
     [*VERIFY, Say("上个月就还", "promise_to_pay", date(2026, 4, 1), 100), Quiet()],
     [*VERIFIED, ["ask_date"], ["promise_noted", BYE]], {"kind": "promise_to_pay", "promise_date": None}),
    ("a date answer to the payment question is a promise", {},
     [*VERIFY, Say("月底", "other", MONTH_END), Say("全部", "other", None, 3260)],
     [*VERIFIED, ["ask_amount"], ["confirm_promise", BYE]], {"kind": "promise_to_pay", "promise_date": MONTH_END}),
    ("dispute after verification", {}, [*VERIFY, Say("这张卡不是我办的", "dispute")],
     [*VERIFIED, ["dispute_logged", BYE]], {"kind": "dispute"}),
    ("dispute before verification", {}, [Say("我没欠钱", "dispute")], [["dispute_logged", BYE]], {"kind": "dispute"}),
    ("dispute while capturing a promise", {}, [*VERIFY, Say("我还", "promise_to_pay"), Say("金额不对", "dispute")],
     [*VERIFIED, ["ask_date"], ["dispute_logged", BYE]], {"kind": "dispute"}),
    ("already paid", {}, [*VERIFY, Say("我上周已经还清了", "already_paid")], [*VERIFIED, ["already_paid_ack", BYE]],
     {"kind": "already_paid"}),
    ("wrong number", {}, [Say("你打错了", "wrong_person")], [["wrong_person_sorry", BYE]], {"kind": "wrong_person"}),
    ("third party gives a callback time", {}, [Say("我是她老公", "wrong_person"), Say("她晚上七点以后在家", "other")],
     [["third_party_callback"], ["callback_confirm", BYE]],
     {"kind": "third_party_callback", "callback_at": datetime(2026, 5, 18, 19, 0, tzinfo=SH)}),
    ("third party gives no time", {}, [Say("她不在", "wrong_person"), Say("不知道", "refusal")],
     [["third_party_callback"], ["wrong_person_sorry", BYE]],
     {"kind": "third_party_callback", "callback_at": None}),
    ("third party does not know the debtor", {}, [Say("她不在", "wrong_person"), Say("我不认识她", "wrong_person")],
     [["third_party_callback"], ["wrong_person_sorry", BYE]], {"kind": "wrong_person"}),
    ("the debtor comes to the phone", {}, [Say("她不在", "wrong_person"), Say("我就是李娜", "identity_confirmed"),
                                            Keys("3302"), Say("周五还清", "promise_to_pay", FRIDAY, 3260)],
     [["third_party_callback"], *VERIFIED, ["confirm_promise", BYE]], {"kind": "promise_to_pay"}),
    ("hardship with plan terms", {},
     [*VERIFY, Say("最近失业了", "hardship"), Say("每月五百，下月一号开始", "hardship", date(2026, 6, 1), 500)],
     [*VERIFIED, ["offer_plan"], ["confirm_plan", BYE]],
     {"kind": "hardship_plan", "promise_date": date(2026, 6, 1), "promise_amount": Decimal("500.00")}),
    ("hardship with half the terms asks for the rest", {},
     [*VERIFY, Say("没钱", "hardship"), Say("一个月三百", "hardship", None, 300), Say("下周五", "other", FRIDAY)],
     [*VERIFIED, ["offer_plan"], ["ask_date"], ["confirm_plan", BYE]], {"kind": "hardship_plan"}),
    ("hardship goes to a human", {}, [*VERIFY, Say("没钱", "hardship"), Say("我真的没办法", "hardship")],
     [*VERIFIED, ["offer_plan"], ["transfer"]], {"kind": "hardship_plan", "transferred": True}),
    ("hardship without a human to transfer to", {"transfer_available": False},
     [*VERIFY, Say("没钱", "hardship"), Say("我真的没办法", "hardship")],
     [*VERIFIED, ["offer_plan"], ["plan_followup", BYE]], {"kind": "hardship_plan", "transferred": False}),
    ("hardship plan declined", {}, [*VERIFY, Say("没钱", "hardship"), Say("不用了", "refusal")],
     [*VERIFIED, ["offer_plan"], [BYE]], {"kind": "hardship_plan", "notes": ("plan declined",)}),
    ("callback inside the hours", {}, [Say("明天下午三点再打", "callback", TUESDAY)], [["callback_confirm", BYE]],
     {"kind": "callback", "callback_at": datetime(2026, 5, 19, 15, 0, tzinfo=SH)}),
    ("callback outside the hours: next permitted time proposed and taken", {},
     [Say("晚上十点打给我", "callback"), Say("好的", "identity_confirmed")],
     [["callback_outside_hours"], ["callback_confirm", BYE]],
     {"kind": "callback", "callback_at": datetime(2026, 5, 19, 8, 0, tzinfo=SH)}),
    ("callback proposal declined", {}, [Say("晚上十点打给我", "callback"), Say("不行", "refusal")],
     [["callback_outside_hours"], [BYE]], {"kind": "callback", "callback_at": None,
                                           "notes": ("proposed time declined",)}),
    ("callback counter-proposal also outside: the next permitted time", {},
     [Say("晚上十点打给我", "callback"), Say("那早上六点吧", "other")],
     [["callback_outside_hours"], ["callback_confirm", BYE]],
     {"kind": "callback", "callback_at": datetime(2026, 5, 19, 8, 0, tzinfo=SH)}),
    ("callback without a time asks once", {}, [Say("我在开会", "callback"), Say("明天吧", "other", TUESDAY)],
     [["ask_callback_time"], ["callback_confirm", BYE]],
     {"kind": "callback", "callback_at": datetime(2026, 5, 19, 10, 0, tzinfo=SH)}),
    ("callback with no time at all", {}, [Say("在忙", "callback"), Say("不知道", "other")],
     [["ask_callback_time"], [BYE]], {"kind": "callback", "callback_at": None}),
    ("callback after verification", {}, [*VERIFY, Say("我在开车，一个小时后再说", "callback"), Quiet(), Quiet()],
     [*VERIFIED, ["ask_callback_time"], ["silence_prompt", "ask_callback_time"], [BYE]], {"kind": "callback"}),
    ("complaint transferred", {}, [Say("我要投诉你们", "complaint"), Say("好，转人工", "other")],
     [["complaint_ack", "offer_transfer"], ["transfer"]], {"kind": "complaint", "transferred": True}),
    ("complaint, transfer declined", {}, [*VERIFY, Say("我要投诉", "complaint"), Say("不用了", "other")],
     [*VERIFIED, ["complaint_ack", "offer_transfer"], [BYE]], {"kind": "complaint", "transferred": False}),
    ("complaint without a human to transfer to", {"transfer_available": False}, [Say("我要投诉", "complaint")],
     [["complaint_ack", BYE]], {"kind": "complaint"}),
    ("silence twice", {}, [Quiet(), Quiet()], [["silence_prompt", "ask_name"], [BYE]], {"kind": "silence"}),
    ("silence, then a reply, then silence again prompts again", {}, [Quiet(), YES, Quiet(), Keys("3302")],
     [["silence_prompt", "ask_name"], ["ask_id_digits"], ["silence_prompt", "ask_id_digits"], VERIFIED[1]], {}),
    ("an intent the model is unsure of is not acted on", {},
     [*VERIFY, Say("别给我打电话了没钱", "complaint", confidence=0.32), Say("我不想还", "refusal")],
     [*VERIFIED, ["not_understood", "ask_payment"], ["restate"]], {}),
    ("not understood twice goes to a human", {}, [Say("啊？", "other"), Say("什么", "other")],
     [["not_understood", "ask_name"], ["transfer"]], {"kind": "transferred", "notes": ("not understood",)}),
    ("not understood twice without a human", {"transfer_available": False},
     [*VERIFY, Say("嗯嗯", "identity_confirmed"), Say("哦", "other")],
     [*VERIFIED, ["not_understood", "ask_payment"], [BYE]], {"kind": "no_understanding"}),
    ("refusal restated once, then goodbye", {}, [*VERIFY, Say("我不还", "refusal"), Say("说了不还", "refusal")],
     [*VERIFIED, ["restate"], [BYE]], {"kind": "refused"}),
    ("refusal, restated, then a promise", {},
     [*VERIFY, Say("没空管", "refusal"), Say("周五吧", "promise_to_pay", FRIDAY)],
     [*VERIFIED, ["restate"], ["ask_amount"]], {}),
    ("refusing to verify", {}, [Say("凭什么告诉你", "refusal"), Say("不说", "refusal")],
     [["verify_why", "ask_name"], ["verify_failed", BYE]], {"kind": "refused"}),
    ("wrong digits twice", {}, [YES, Keys("1111"), Keys("2222")], [["ask_id_digits"], ["id_retry"],
                                                                   ["verify_failed", BYE]], {"kind": "not_verified"}),
    ("wrong digits, then spoken right", {}, [YES, Keys("1111"), Say("三三零二", "other")],
     [["ask_id_digits"], ["id_retry"], VERIFIED[1]], {}),
    ("spoken digits with words around them", {}, [YES, Say("后四位是三三零二", "identity_confirmed")], VERIFIED, {}),
    ("keys outside the digits question are ignored", {}, [Keys("1"), YES], [[], ["ask_id_digits"]], {}),
    ("maximum call length", {}, [*VERIFY, Wait(120), Wait(181), Say("我周五还", "promise_to_pay", FRIDAY, 100)],
     [*VERIFIED, [], ["max_length_goodbye"], []], {"kind": "max_length"}),
    ("maximum length reached during a reply", {"max_call_s": 60}, [YES, Wait(61.0 - 0)],
     [["ask_id_digits"], ["max_length_goodbye"]], {"kind": "max_length"}),
]


def said_unverified_is_checked(script: Script, line_id: str) -> bool:
    """Whether the loader checked this line in some unverified state."""
    return any(not STATES[state].verified for state in script.lines[line_id].states)


@pytest.mark.parametrize(("case", "options", "events", "expected", "outcome"), CASES, ids=[c[0] for c in CASES])
def test_dialog_branches(case: str, options: dict[str, Any], events: list[Event], expected: list[list[str]],
                         outcome: dict[str, Any]):
    call = Call(options=options)
    assert call.opening == ["opening", "ask_name"]
    assert call.play(events) == expected
    if outcome:
        assert call.dialog.done and call.dialog.outcome is not None
        assert {key: getattr(call.dialog.outcome, key) for key in outcome} == outcome
        last = call.said[-1][0]
        assert last.transfer or last.end_call
        assert [line.line_id for line, _ in call.said if line.end_call or line.transfer] == [last.line_id]
    else:
        assert not call.dialog.done


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_line_said_passes_the_rule_engine_in_the_state_it_was_said_in(case: tuple):
    _, options, events, _, _ = case
    call = Call(options=options)
    call.play(events)
    engine = RuleEngine.from_pack("cn-collection")
    for line, state in call.said:
        assert [f.rule for f in engine.check("agent", line.text, state) if f.category != "signal"] == [], line
        if not state.verified:
            assert said_unverified_is_checked(call.dialog.script, line.line_id), line.line_id


def test_the_state_follows_the_call():
    call = Call()
    assert call.dialog.state == CallState(verified=False)
    call.play([*VERIFY])
    assert call.dialog.state == CallState(verified=True)
    call.dialog.state.verified = False  # a copy: the dialog's own state is unchanged
    assert call.dialog.state.verified
    call.play([Say("不是我刷的", "dispute")])
    assert call.dialog.state == CallState(verified=True, disputed=True)
    third = Call()
    third.play([Say("我是她妈妈", "wrong_person")])
    assert third.dialog.state == CallState(verified=False, third_party=True)


def test_lines_are_filled_with_the_account_and_the_promise():
    call = Call(script="cn-middle", account=replace(CN_ACCOUNT, days_overdue=45))
    call.play([*VERIFY, Say("下周五还两千", "promise_to_pay", FRIDAY, 2000)])
    texts = {line.line_id: line.text for line, _ in call.said}
    assert "李娜" in texts["ask_name"] and "3260.50元" in texts["verified_disclosure"]
    assert "2026年4月20日" in texts["verified_disclosure"]
    assert "2026年5月22日前还款2000元" in texts["confirm_promise"]
    before = [line.text for line, state in call.said if not state.verified]
    assert not any(word in text for text in before for word in ("3260", "欠款", "逾期", "2026年4月20日"))


def test_the_late_script_gives_notice_only_after_verification():
    call = Call(script="cn-late", account=replace(CN_ACCOUNT, days_overdue=75))
    call.play([*VERIFY, Say("不还", "refusal")])
    notices = [(line.line_id, state.verified) for line, state in call.said if "诉讼" in line.text]
    assert notices == [("verified_disclosure", True), ("restate", True)]


def test_english_call_with_mini_miranda_after_verification():
    call = Call(script="en-reminder", account=EN_ACCOUNT)
    events = [Say("Yes, speaking", "identity_confirmed"), Say("four eight two one", "other"),
              Say("I can pay 200 dollars on Friday", "promise_to_pay", FRIDAY, 200)]
    assert call.play(events) == [*VERIFIED, ["confirm_promise", BYE]]
    texts = [(line.line_id, line.text, state) for line, state in call.said]
    engine = RuleEngine.from_pack("us-fdcpa-regf")
    miranda = [i for i, (_, text, _) in enumerate(texts) if "This is an attempt to collect a debt" in text]
    assert miranda == [3] and texts[3][2].verified
    for line_id, text, state in texts:
        assert [f.rule for f in engine.check("agent", text, state) if f.category != "signal"] == [], line_id
    assert "$200 on May 22, 2026" in texts[-2][1]
    assert "$812.40 with Example Bank" in texts[3][1]


@pytest.mark.parametrize(("script", "account", "reply", "expected"), [
    ("en-reminder", EN_ACCOUNT, "Yeah.", ["ask_id_digits"]),
    ("cn-early", CN_ACCOUNT, "嗯", ["ask_id_digits"]),
    ("en-reminder", EN_ACCOUNT, "No.", ["not_understood", "ask_name"]),
])
def test_a_bare_yes_to_is_that_you_asks_for_the_digits(script: str, account: Account, reply: str,
                                                      expected: list[str]):
    call = Call(script=script, account=account)
    assert call.play([Say(reply, "other")]) == [expected]
    assert not call.dialog.state.verified, "only the digits verify"


def test_english_callback_is_proposed_inside_the_hours_in_the_debtors_zone():
    call = Call(script="en-reminder", account=EN_ACCOUNT)
    assert call.play([Say("Call me back at 10 pm", "callback"), Say("ok", "other")]) == [
        ["callback_outside_hours"], ["callback_confirm", BYE]]
    assert "Tuesday, May 19 at 8:00 AM" in call.said[2][0].text
    assert call.dialog.outcome is not None
    assert call.dialog.outcome.callback_at == datetime(2026, 5, 19, 8, 0, tzinfo=NY)


def test_unknown_zones_use_every_fallback_zone():
    """Without a zone the cn pack assumes Shanghai and Urumqi: 08:00 in Urumqi is 10:00 in Shanghai."""
    call = Call(account=replace(CN_ACCOUNT, zones=()))
    call.play([Say("早上八点打", "callback", TUESDAY), Say("可以", "other")])
    assert call.dialog.outcome is not None
    assert call.dialog.outcome.callback_at == datetime(2026, 5, 19, 10, 0, tzinfo=SH)


def test_hang_up_keeps_what_was_captured():
    call = Call()
    call.play([*VERIFY, Say("周五还", "promise_to_pay", FRIDAY)])
    call.dialog.hang_up()
    assert call.dialog.outcome is not None
    assert (call.dialog.outcome.kind, call.dialog.outcome.promise_date) == ("hung_up", FRIDAY)
    assert call.play([Say("喂", "other"), Quiet(), Wait(999)]) == [[], [], []]


def test_a_dialog_is_started_once_and_before_anything_else():
    script = load_script("cn-early")
    dialog = Dialog(script, CN_ACCOUNT, caller=CN_CALLER, now=Clock(MONDAY_10AM))
    with pytest.raises(DialogError, match="call start"):
        dialog.hear(YES.understanding())
    assert dialog.tick() == []
    dialog.start()
    with pytest.raises(DialogError, match="already called"):
        dialog.start()
    naive = Dialog.__new__(Dialog)
    with pytest.raises(DialogError, match="timezone-aware"):
        Dialog.__init__(naive, script, CN_ACCOUNT, caller=CN_CALLER, now=lambda: datetime(2026, 5, 18, 10))


@pytest.mark.parametrize(("script", "changes", "reason"), [
    ("cn-early", {"id_last4": "12a4"}, "id_last4 must be four digits"),
    ("cn-early", {"id_last4": "12345"}, "id_last4 must be four digits"),
    ("cn-early", {"days_overdue": 45}, "not for an account this many days overdue"),
    ("cn-early", {"name": "王老赖"}, "breaks rule cn.insult.personal"),
    ("cn-early", {"lender": "示例小额贷款公司"}, "breaks rule cn.disclosure.before_verification"),
    ("cn-early", {"amount": Decimal("-1")}, "amount must be more than 0"),
    ("cn-early", {"name": "张" * 40}, "name is longer than 32"),
])
def test_an_account_that_cannot_be_called_fails_before_dialling(script: str, changes: dict[str, Any], reason: str):
    account = replace(CN_ACCOUNT, **changes)
    with pytest.raises(AccountError, match=reason) as caught:
        Dialog(load_script(script), account, caller=CN_CALLER, now=Clock(MONDAY_10AM))
    assert "王老赖" not in str(caught.value) and "贷款公司" not in str(caught.value)


def test_an_id_ending_in_x_is_verified_by_keys_and_speech():
    for said in (Keys("330*"), Say("三三零叉", "other")):
        call = Call(account=replace(CN_ACCOUNT, id_last4="330x"))
        assert call.play([YES, said]) == VERIFIED


# ---- the dialog always ends, and never says what it must not -------------------------------------------------

SCRIPTS = {name: load_script(name) for name in ("cn-early", "en-reminder")}
ENGINES = {name: RuleEngine.from_pack(script.pack) for name, script in SCRIPTS.items()}
REPLIES = st.builds(Say, text=st.sampled_from(["是我", "3302", "4821", "晚上十点", "下午三点", "不行", "好的",
                                               "at 9 pm", "yes", "我不认识他", "three three zero two", ""]),
                    intent=st.sampled_from(INTENTS), day=st.sampled_from([None, TUESDAY, FRIDAY, date(2026, 1, 1)]),
                    amount=st.sampled_from([None, 0, 500, 10**10]))
EVENTS = st.one_of(REPLIES, st.builds(Keys, st.sampled_from(["3302", "4821", "1111", "#"])), st.just(Quiet()),
                   st.builds(Wait, st.floats(min_value=0, max_value=40)))


@settings(max_examples=150, deadline=None)
@given(script=st.sampled_from(sorted(SCRIPTS)), events=st.lists(EVENTS, max_size=MAX_TURNS + 5))
def test_any_sequence_of_turns_ends_lawfully(script: str, events: list[Event]):
    account, caller = (EN_ACCOUNT, EN_CALLER) if script == "en-reminder" else (CN_ACCOUNT, CN_CALLER)
    if script == "en-reminder":
        events = [Keys("4821") if isinstance(e, Keys) and e.keys == "3302" else e for e in events]
    clock = Clock(MONDAY_10AM)
    dialog = Dialog(SCRIPTS[script], account, caller=caller, now=clock)
    said = [(line, dialog.state) for line in dialog.start()]
    for event in events:
        said += [(line, dialog.state) for line in act(dialog, clock, event)]
    for line, state in said:
        assert [f.rule for f in ENGINES[script].check("agent", line.text, state) if f.category != "signal"] == []
        if not state.verified:
            assert said_unverified_is_checked(SCRIPTS[script], line.line_id), line.line_id
    if len(events) > MAX_TURNS:
        assert dialog.done
    if dialog.done:
        assert sum(line.end_call or line.transfer for line, _ in said) == 1
        assert said[-1][0].end_call or said[-1][0].transfer


# ---- what the dialog reads itself: digits, times, yes and no ---------------------------------------------------

@pytest.mark.parametrize(("text", "language", "expected"), [
    ("3302", "zh", "3302"), ("三三零二", "zh", "3302"), ("后四位是 3 3 0 2", "zh", "3302"), ("幺二三四", "zh", "1234"),
    ("一千二百三十四", "zh", "1234"), ("两两零七", "zh", "2207"), ("三三零叉", "zh", "330X"), ("330*", "zh", "330X"),
    ("我身份证后四位是〇〇一二", "zh", "0012"), ("是我", "zh", None), ("三三零", "zh", None), ("1234#", "zh", "1234"),
    ("four eight two one", "en", "4821"), ("it's 4 8 2 1", "en", "4821"), ("one two", "en", None),
    ("XXXX", "en", None),
])
def test_parse_digits(text: str, language: str, expected: str | None):
    assert parse_digits(text, language) == expected


@pytest.mark.parametrize(("text", "language", "expected"), [
    ("晚上十点", "zh", time(22)), ("下午三点半", "zh", time(15, 30)), ("明天上午9点", "zh", time(9)),
    ("三点", "zh", time(15)), ("早上六点", "zh", time(6)), ("中午一点", "zh", time(13)),
    ("两点十分", "zh", time(14, 10)),
    ("8:30", "zh", time(8, 30)), ("十二点", "zh", time(12)), ("快一点", "zh", None), ("晚点再打", "zh", None),
    ("一点五万", "zh", None), ("两千块", "zh", None), ("at 3", "en", time(15)), ("10:30 am", "en", time(10, 30)),
    ("nine o'clock", "en", time(9)), ("9 pm", "en", time(21)), ("12 am", "en", time(0)), ("noon", "en", time(12)),
    ("I owe 300 dollars", "en", None),
])
def test_parse_clock(text: str, language: str, expected: time | None):
    assert parse_clock(text, language) == expected


@pytest.mark.parametrize(("day", "clock", "expected"), [
    (None, None, datetime(2026, 5, 18, 12, 30, tzinfo=SH)),  # soon: two hours on, rounded up to the half hour
    (TUESDAY, None, datetime(2026, 5, 19, 10, 0, tzinfo=SH)),
    (None, time(15), datetime(2026, 5, 18, 15, 0, tzinfo=SH)),
    (None, time(9), datetime(2026, 5, 19, 9, 0, tzinfo=SH)),  # 9:00 has passed today: tomorrow
    (date(2026, 5, 1), time(9), datetime(2026, 5, 18, 12, 30, tzinfo=SH)),  # a past day: soon
])
def test_callback_at(day: date | None, clock: time | None, expected: datetime):
    assert callback_at(MONDAY_10AM.replace(minute=1), SH, day, clock) == expected


@pytest.mark.parametrize(("text", "intent", "language", "expected"), [
    ("好的", "other", "zh", True), ("不用了", "other", "zh", False), ("不要", "identity_confirmed", "zh", False),
    ("嗯", "other", "zh", True), ("算了", "refusal", "zh", False), ("yes please", "other", "en", True),
    ("no thanks", "other", "en", False), ("nothing", "other", "en", False), ("hmm", "identity_confirmed", "en", True),
])
def test_affirmative(text: str, intent: str, language: str, expected: bool):
    assert affirmative(Understanding(text, intent, 0.9), language) is expected  # type: ignore[arg-type]


def test_wrong_number_cues():
    assert wrong_number("你打错了") and wrong_number("Sorry, wrong number") and wrong_number("我不认识这个人")
    assert not wrong_number("她不在家") and not wrong_number("I don't know when she'll be back")


@given(st.text(max_size=40), st.sampled_from(["zh", "en"]))
def test_reply_parsers_never_raise(text: str, language: str):
    digits = parse_digits(text, language)
    assert digits is None or (len(digits) == 4 and digits[:3].isdigit())
    parse_clock(text, language)


def test_script_fixture_is_the_bundled_one():
    assert isinstance(SCRIPTS["cn-early"], Script)
