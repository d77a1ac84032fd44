"""Outbound campaigns: CSV import, sealed personal data, the pre-dial gate, cadence, retries, outcomes, SIP dials."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from live_peers import SIP_DIR, Peers, finished, free_port, listening, sip_port

from compliance_rules.pack import load_pack
from voicebot.adapters.sip import SipSettings
from voicebot.audit import AuditLog
from voicebot.campaigns import (
    CallResult,
    CampaignFileError,
    CampaignRunner,
    CampaignStore,
    DebtorCall,
    DialPlan,
    DialPlanError,
    PiiKeyError,
    RetryPolicy,
    campaign_report,
    hold_then_hang_up,
    read_campaign_file,
    run_sip_campaign,
    stage_for,
)
from voicebot.campaigns.dialer import bot_params, sip_failure_status
from voicebot.campaigns.importer import FIELD_PARSERS, parse_phone, parse_row, parse_text

SHANGHAI = ZoneInfo("Asia/Shanghai")
URUMQI = ZoneInfo("Asia/Urumqi")
HEADER = "name,phone,tz,amount,days_overdue,lender,id_last4,due_date,account_id,agent_id"
NAME, PHONE, LAST4 = "张伟明", "+8613912345678", "482X"
VOICEBOT = str(Path(sys.executable).parent / "voicebot")


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def row(account: str = "A1", *, name: str = NAME, phone: str = PHONE, tz: str = "Asia/Shanghai",
        amount: str = "2000.00", days: str = "12", lender: str = "示例银行", last4: str = LAST4,
        due: str = "2026-11-01", agent: str = "bot-1") -> str:
    return ",".join([name, phone, tz, amount, days, lender, last4, due, account, agent])


class Clock:
    """An injected wall clock; `sleep` moves it forward instead of waiting."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += timedelta(seconds=seconds)


class ScriptedDialer:
    """A stand-in dialer answering from a script: here the runner's policy is under test, not the call."""

    def __init__(self, clock: Clock, *results: CallResult, default: CallResult | None = None) -> None:
        self.clock, self.results = clock, list(results)
        self.default = default or CallResult(status="no_answer")
        self.calls: list[tuple[datetime, DebtorCall]] = []

    async def call(self, debt: DebtorCall) -> CallResult:
        self.calls.append((self.clock(), debt))
        return self.results.pop(0) if self.results else self.default


@pytest.fixture
def db(audit_log: AuditLog, tmp_path: Path) -> Iterator[tuple[CampaignStore, AuditLog]]:
    """A fresh store beside the audit log, in one SQLite file as the CLI opens them or in PostgreSQL."""
    store = CampaignStore.open(audit_log.path, key_path=tmp_path / "voicebot.db.pii.key")
    yield store, audit_log
    store.close()


def load(store: CampaignStore, text: str, campaign: str = "c1", at: datetime | None = None) -> None:
    parsed = parse_text(text)
    assert not parsed.problems, parsed.problems
    store.import_rows(campaign, parsed.rows, source="test.csv", now=at or datetime(2026, 11, 2, tzinfo=UTC))


def runner(store: CampaignStore, audit: AuditLog, dialer: ScriptedDialer, *, pack: str = "cn-collection",
           **policy: object) -> CampaignRunner:
    return CampaignRunner(store, dialer, load_pack(pack), audit, policy=RetryPolicy(**policy), now=dialer.clock,
                          sleep=dialer.clock.sleep)


def attempts(store: CampaignStore) -> list[dict]:
    return store.query("SELECT * FROM attempts ORDER BY started_at, rowid")


# --- CSV import ----------------------------------------------------------------------------------------

def test_bad_rows_are_reported_by_line_and_good_rows_kept() -> None:
    text = csv_text(
        row("A1"),                                              # line 2: good
        row("A2", phone="138-0013-8000"),                       # 3: no country code
        row("A3", amount="-5"),                                 # 4: negative amount
        row("A4", days="3.5", amount="0"),                      # 5: two problems
        '"王\n芳",+8613800138001,Asia/Shanghai,1200,45,银行,,,A5,',  # 6-7: a line break inside a name
        row("A6", tz="Mars/Olympus", days="61", last4=""),      # 8: unknown zone is kept, with a warning
        "only,three,fields",                                    # 9: short row
        "",                                                     # 10: blank, skipped
        row("A7", due="2026-13-01", last4="12345"),             # 11: bad date and ID digits
        row("A8", amount='"1,234.5"', phone="0086 139 1234 5679", days="31"),  # 12: good, normalised
    )
    parsed = parse_text(text)
    assert [(p.line, p.field) for p in parsed.problems] == [
        (3, "phone"), (4, "amount"), (5, "amount"), (5, "days_overdue"), (6, "name"), (9, "row"), (11, "id_last4"),
        (11, "due_date")]
    assert [r.account_id for r in parsed.rows] == ["A1", "A6", "A8"]
    assert [r.line for r in parsed.rows] == [2, 8, 12]
    assert parsed.rows_read == 9
    a1, a6, a8 = parsed.rows
    assert a1.amount == Decimal("2000.00") and a1.stage == "early" and a1.due_date == date(2026, 11, 1)
    assert a1.id_last4 == "482X" and a1.agent_id == "bot-1" and a6.id_last4 is None
    assert a6.zones == ("Mars/Olympus",) and a6.stage == "late"
    assert [(w.line, w.field) for w in parsed.warnings] == [(8, "tz")]
    assert a8.phone == "+8613912345679" and a8.amount == Decimal("1234.50") and a8.stage == "middle"
    for problem in parsed.problems:  # no value is echoed back
        assert "138-0013-8000" not in str(problem) and "12345" not in str(problem) and "王" not in str(problem)
    assert NAME not in repr(a1) and PHONE not in repr(a1) and LAST4 not in repr(a1)


def test_header_aliases_bom_and_unusable_files(tmp_path: Path) -> None:
    ok = "\ufeffName,Phone,Time_Zone,Amount,Days_Overdue,Lender\n李娜,+8613700001111,Asia/Shanghai,99,0,银行\n"
    parsed = parse_text(ok)
    assert not parsed.problems and parsed.rows[0].zones == ("Asia/Shanghai",) and parsed.rows[0].stage == "early"
    with pytest.raises(CampaignFileError, match=r":1: missing column\(s\) days_overdue"):
        parse_text("name,phone,tz,amount,lender\n")
    with pytest.raises(CampaignFileError, match="given twice: tz"):
        parse_text("name,phone,tz,time_zone,amount,days_overdue,lender\n")
    with pytest.raises(CampaignFileError, match="empty"):
        parse_text("")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(csv_text(row()).encode() + "Müller,+4915112345678,Europe/Berlin,5,1,B\n".encode("latin-1"))
    with pytest.raises(CampaignFileError, match=r"latin.csv:3: not UTF-8"):
        read_campaign_file(latin)


@pytest.mark.parametrize(("days", "stage"), [(0, "early"), (1, "early"), (30, "early"), (31, "middle"),
                                             (60, "middle"), (61, "late"), (400, "late")])
def test_stage_follows_days_overdue(days: int, stage: str) -> None:
    assert stage_for(days) == stage


@pytest.mark.parametrize(("text", "phone"), [("+86 139 1234 5678", "+8613912345678"), ("0044-20-7946-0958",
                                             "+442079460958"), ("+1 (212) 555-0100", "+12125550100")])
def test_phones_are_normalised_to_e164(text: str, phone: str) -> None:
    assert parse_phone(text) == phone


@pytest.mark.parametrize("text", ["13912345678", "+0123456789", "+86 139 ABC", "+1234", "", "+8613912345678901"])
def test_phones_that_are_not_e164_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        parse_phone(text)


@given(st.dictionaries(st.sampled_from([*FIELD_PARSERS, "other"]), st.text(max_size=40)))
def test_row_parser_never_raises(raw: dict[str, str]) -> None:
    found, problems, _ = parse_row(7, raw)
    assert (found is None) == bool(problems)
    assert all(p.line == 7 for p in problems)


@given(st.text(max_size=300))
def test_file_parser_raises_only_campaign_file_error(body: str) -> None:
    with contextlib.suppress(CampaignFileError):
        parse_text(HEADER + "\n" + body)


def test_language_column_picks_the_bots_script_language(db) -> None:
    store, _ = db
    header = HEADER + ",language"
    parsed = parse_text(csv_text(row("A1") + ",en", row("A2") + ",", row("A3") + ",fr", header=header))
    assert [(p.line, p.field) for p in parsed.problems] == [(4, "language")]
    assert "zh, en" in str(parsed.problems[0]) or "en, zh" in str(parsed.problems[0])
    store.import_rows("c1", parsed.rows, source="t.csv", now=datetime(2026, 11, 2, tzinfo=UTC))
    calls = {a: store.debtor_call(store.account("c1", a), attempt=1, agreement=None) for a in ("A1", "A2")}
    assert calls["A1"].language == "en" and calls["A2"].language == "", "empty: the campaign pack's language"
    assert bot_params(calls["A1"])["language"] == "en" and "language" not in bot_params(calls["A2"])


# --- personal data at rest ---------------------------------------------------------------------------

def test_personal_fields_are_sealed_at_rest_and_open_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.db"
    with CampaignStore.open(path) as store:
        load(store, csv_text(row("A1"), row("A2", name="Ann Lee", phone="+12125550100", tz="America/New_York")))
    key = tmp_path / "voicebot.db.pii.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("voicebot.db*") if p != key)
    for secret in (NAME, PHONE, PHONE[1:], "13912345678", LAST4, "Ann Lee", "2125550100"):
        assert secret.encode() not in raw, secret
    with CampaignStore.open(path) as store:
        account = store.account("c1", "A1")
        debt = store.debtor_call(account, attempt=1, agreement=None)
        assert (debt.name, debt.phone, debt.id_last4, debt.amount) == (NAME, PHONE, LAST4, Decimal("2000.00"))
        assert store.find_by_phone(PHONE) == [("c1", "A1")]
        assert NAME not in repr(debt) and PHONE not in repr(debt)


def test_wrong_or_missing_key_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.db"
    key = tmp_path / "voicebot.db.pii.key"
    with CampaignStore.open(path) as store:
        load(store, csv_text(row("A1"), row("A2", phone="+8613900000002")))
    good = key.read_bytes()
    key.write_bytes(os.urandom(32))
    with pytest.raises(PiiKeyError, match="not the key"):
        CampaignStore.open(path)
    key.unlink()
    with pytest.raises(PiiKeyError, match=r"missing.*restore the key"):
        CampaignStore.open(path)
    with CampaignStore.open(path, pii=False) as store:  # reports need no key
        assert campaign_report(store, "c1")["accounts"] == 2
        with pytest.raises(PiiKeyError, match="without its PII key"):
            store.debtor_call(store.account("c1", "A1"), attempt=1, agreement=None)
    key.write_bytes(good)
    with CampaignStore.open(path) as store:  # a sealed field moved to another row does not open there
        blob = store.query("SELECT phone_sealed FROM accounts WHERE account_id = 'A2'")[0]["phone_sealed"]
        with store._db.write():
            store._db.execute("UPDATE accounts SET phone_sealed = ? WHERE account_id = 'A1'", [blob])
        with pytest.raises(PiiKeyError, match="phone field does not open"):
            store.debtor_call(store.account("c1", "A1"), attempt=1, agreement=None)


def test_reimport_updates_accounts_and_duplicates_are_refused(db) -> None:
    store, _ = db
    parsed = parse_text(csv_text(row("A1"), row("A1", amount="10"), row("", phone="+8613900000009"),
                                 row("", phone="+8613900000009")))
    first = store.import_rows("c1", parsed.rows, source="f.csv", now=datetime(2026, 11, 2, tzinfo=UTC))
    assert (first.added, first.updated) == (2, 0)
    assert [(p.line, p.field, p.reason) for p in first.problems] == [
        (3, "account_id", "same account as line 2"), (5, "account_id", "same account as line 4")]
    again = store.import_rows("c1", parsed.rows[:1], source="f.csv", now=datetime(2026, 11, 3, tzinfo=UTC))
    assert (again.added, again.updated) == (0, 1)
    derived = [a for (c, a) in store.find_by_phone("+8613900000009")]
    assert len(derived) == 1 and derived[0].startswith("acct-")


# --- the gate, cadence and retries (injected clock, scripted dialer) -------------------------------------

async def test_dial_at_22_shanghai_is_refused_and_recorded_with_the_next_time(db) -> None:
    store, audit = db
    load(store, csv_text(row("A1")))
    clock = Clock(datetime(2026, 11, 2, 22, 0, tzinfo=SHANGHAI))
    dialer = ScriptedDialer(clock, CallResult(status="answered", outcome={"kind": "answered"}, call_id="c-1"))
    reports = await runner(store, audit, dialer).run_once()
    assert dialer.calls == []
    assert [(r.status, r.state) for r in reports] == [("refused", "pending")]
    assert reports[0].next_due == datetime(2026, 11, 3, 8, 0, tzinfo=SHANGHAI)
    [refused] = attempts(store)
    detail = json.loads(refused["detail"])
    assert refused["status"] == "refused" and "outside 08:00–21:00" in detail["reasons"][0]
    assert datetime.fromisoformat(detail["next_allowed"]) == datetime(2026, 11, 3, 8, 0, tzinfo=SHANGHAI)
    record = [r for r in audit.records() if r.kind == "dial_attempt"][-1]
    assert record.data["allowed"] is False and record.data["account_id"] == "A1" and record.data["reasons"]
    clock.set(datetime(2026, 11, 3, 7, 59, tzinfo=SHANGHAI))
    assert await runner(store, audit, dialer).run_once() == []
    clock.set(datetime(2026, 11, 3, 8, 0, tzinfo=SHANGHAI))
    [answered] = await runner(store, audit, dialer).run_once()
    assert answered.status == "answered" and answered.state == "done" and len(dialer.calls) == 1


async def test_unknown_zone_must_fit_every_zone_of_the_pack(db) -> None:
    store, audit = db
    load(store, csv_text(row("A1", tz="Mars/Olympus")))
    clock = Clock(datetime(2026, 11, 2, 8, 30, tzinfo=SHANGHAI))  # 06:30 in Urumqi
    [refused] = await runner(store, audit, ScriptedDialer(clock)).run_once()
    assert refused.status == "refused" and refused.next_due == datetime(2026, 11, 2, 8, 0, tzinfo=URUMQI)


async def test_cadence_limits_of_the_pack_hold_per_debt(db) -> None:
    store, audit = db
    load(store, csv_text(row("A1")))
    clock = Clock(datetime(2026, 11, 2, 9, 0, tzinfo=SHANGHAI))
    dialer = ScriptedDialer(clock)
    reports = await runner(store, audit, dialer, max_attempts=14, retry_after=timedelta(minutes=10)).run()
    dials = [at for at, _ in dialer.calls]
    assert len(dials) == 14 and reports[-1].state == "exhausted"
    for at in dials:  # cn-collection: 08:00-21:00, at most 3 dials a day and 10 in 7 days
        assert 8 <= at.astimezone(SHANGHAI).hour < 21
        assert sum(at - timedelta(days=1) < d <= at for d in dials) <= 3
        assert sum(at - timedelta(days=7) < d <= at for d in dials) <= 10
    assert dials[:4] == [datetime(2026, 11, 2, 9, 0, tzinfo=SHANGHAI) + timedelta(minutes=10 * i) for i in range(3)] \
        + [datetime(2026, 11, 3, 9, 0, tzinfo=SHANGHAI)]
    refusals = [json.loads(a["detail"])["reasons"] for a in attempts(store) if a["status"] == "refused"]
    assert any("cadence: 3 calls in the last 1 day(s)" in r[0] for r in refusals)
    assert any("cadence: 10 calls in the last 7 day(s)" in r[0] for r in refusals)
    assert clock.slept and all(s > 0 for s in clock.slept)


async def test_unanswered_busy_failed_are_retried_after_the_delay_up_to_max_attempts(db) -> None:
    store, audit = db
    load(store, csv_text(row("A1")))
    clock = Clock(datetime(2026, 11, 2, 19, 30, tzinfo=SHANGHAI))
    dialer = ScriptedDialer(clock, CallResult(status="no_answer"), CallResult(status="busy"),
                            CallResult(status="failed", detail={"sip_status": 503}))
    run = runner(store, audit, dialer, max_attempts=3, retry_after=timedelta(minutes=60))
    [first] = await run.run_once()
    assert (first.status, first.state, first.next_due) == ("no_answer", "retry", clock() + timedelta(hours=1))
    clock.set(datetime(2026, 11, 2, 20, 29, tzinfo=SHANGHAI))
    assert await run.run_once() == []
    clock.set(datetime(2026, 11, 2, 20, 30, tzinfo=SHANGHAI))
    [second] = await run.run_once()
    assert second.status == "busy" and second.next_due == datetime(2026, 11, 2, 21, 30, tzinfo=SHANGHAI)
    clock.set(second.next_due)  # the retry falls outside the hours: the gate moves it to 08:00
    [held] = await run.run_once()
    assert held.status == "refused" and held.next_due == datetime(2026, 11, 3, 8, 0, tzinfo=SHANGHAI)
    clock.set(held.next_due)
    [third] = await run.run_once()
    assert (third.status, third.state, third.next_due) == ("failed", "exhausted", None)
    assert store.next_due() is None and len(dialer.calls) == 3
    assert [d.attempt for _, d in dialer.calls] == [1, 2, 3]
    assert [a["status"] for a in attempts(store)] == ["no_answer", "busy", "refused", "failed"]


async def test_outcomes_are_stored_answered_calls_not_retried_and_a_callback_kept(db) -> None:
    store, audit = db
    load(store, csv_text(row("A1"), row("A2", phone="+8613900000002", days="45"),
                         row("A3", phone="+8613900000003", days="90")))
    clock = Clock(datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI))
    agreed = datetime(2026, 11, 3, 21, 30, tzinfo=SHANGHAI)  # the debtor asked for 21:30: outside the usual hours
    dialer = ScriptedDialer(
        clock,
        CallResult(status="answered", call_id="call-1",
                   outcome={"kind": "promise_to_pay", "ptp_date": "2026-11-20", "ptp_amount": "1200"}),
        CallResult(status="answered", call_id="call-2",
                   outcome={"kind": "callback", "callback_at": agreed.isoformat()}),
        CallResult(status="answered", call_id="call-3", outcome={"kind": "dispute"}),
        CallResult(status="answered", call_id="call-4", outcome={"kind": "promise_to_pay", "ptp_amount": "800.50",
                                                                 "ptp_date": "2026-11-30"}))
    run = runner(store, audit, dialer)
    first = await run.run_once()
    assert [(r.account_id, r.kind, r.state) for r in first] == [
        ("A1", "promise_to_pay", "done"), ("A2", "callback", "callback"), ("A3", "dispute", "done")]
    assert store.next_due() == agreed
    clock.set(agreed)
    [kept] = await run.run_once()
    assert (kept.account_id, kept.status, kept.state) == ("A2", "answered", "done")
    assert dialer.calls[-1][1].agreement is not None
    allowed = [r for r in audit.records() if r.kind == "dial_attempt" and r.data["account_id"] == "A2"][-1]
    assert allowed.data["evidence"].startswith("callback agreed by the debtor on call call-2")
    outcomes = store.query("SELECT account_id, call_id, kind, ptp_date, ptp_amount, callback_at FROM outcomes "
                           "ORDER BY at, rowid")
    assert [(o["account_id"], o["kind"], o["ptp_amount"]) for o in outcomes] == [
        ("A1", "promise_to_pay", "1200"), ("A2", "callback", None), ("A3", "dispute", None),
        ("A2", "promise_to_pay", "800.50")]
    assert outcomes[1]["callback_at"] == agreed.astimezone(UTC).isoformat()
    report = campaign_report(store, "c1", accounts=True)
    assert report["states"]["done"] == 3 and report["dials"]["answered"] == 4 and report["conversations"] == 4
    assert report["outcomes"] == {"callback": 1, "dispute": 1, "promise_to_pay": 2}
    assert report["promised_amount"] == "2000.50" and report["next_due"] is None
    assert report["stages"] == {"early": 1, "middle": 1, "late": 1}
    call_outcomes = [r for r in audit.records() if r.kind == "call_outcome"]
    assert [r.call_id for r in call_outcomes] == ["call-1", "call-2", "call-3", "call-4"]
    assert audit.verify().ok


async def test_dialog_outcome_fields_are_read_and_a_third_partys_callback_keeps_the_hours(db) -> None:
    store, audit = db
    load(store, csv_text(row("A1"), row("A2", phone="+8613900000002")))
    clock = Clock(datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI))
    late = datetime(2026, 11, 3, 21, 30, tzinfo=SHANGHAI)
    dialer = ScriptedDialer(
        clock,
        CallResult(status="answered", outcome={"kind": "promise_to_pay", "promise_date": date(2026, 11, 20),
                                               "promise_amount": Decimal("1500.00")}),
        CallResult(status="answered", outcome={"kind": "third_party_callback", "callback_at": late}))
    run = runner(store, audit, dialer)
    assert [(r.kind, r.state) for r in await run.run_once()] == [("promise_to_pay", "done"),
                                                                 ("third_party_callback", "callback")]
    ptp = store.query("SELECT ptp_date, ptp_amount FROM outcomes WHERE account_id = 'A1'")[0]
    assert (ptp["ptp_date"], ptp["ptp_amount"]) == ("2026-11-20", "1500.00")
    clock.set(late)  # a third party cannot agree to a call outside the hours for the debtor
    [held] = await run.run_once()
    assert held.status == "refused" and held.next_due == datetime(2026, 11, 4, 8, 0, tzinfo=SHANGHAI)
    conversation = {a["account_id"]: a["conversation"] for a in attempts(store) if a["status"] == "answered"}
    assert conversation == {"A1": 1, "A2": 0}


async def test_a_conversation_starts_the_us_quiet_period_but_a_wrong_person_does_not(db) -> None:
    store, audit = db
    load(store, csv_text(row("A1", tz="America/New_York", phone="+12125550100"),
                         row("A2", tz="America/New_York", phone="+12125550101")))
    clock = Clock(datetime(2026, 11, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")))
    callback = (clock() + timedelta(days=2)).isoformat()
    dialer = ScriptedDialer(clock, CallResult(status="answered", outcome={"kind": "callback", "callback_at": callback}),
                            CallResult(status="answered", outcome={"kind": "wrong_person"}),
                            CallResult(status="no_answer"))
    run = runner(store, audit, dialer, pack="us-fdcpa-regf")
    await run.run_once()
    clock.set(clock() + timedelta(days=2))
    [kept] = await run.run_once()  # the callback the consumer asked for is not held back by the quiet days
    assert kept.status == "no_answer" and dialer.calls[-1][1].agreement is not None
    clock.set(clock() + timedelta(days=1))
    [held] = await run.run_once()  # its retry has no agreement: the quiet days after the conversation hold it
    assert held.status == "refused" and "conversation took place within 7 days" in held.reasons[0]
    assert held.next_due == datetime(2026, 11, 9, 10, 0, tzinfo=ZoneInfo("America/New_York"))
    conversation = {a["account_id"]: a["conversation"] for a in attempts(store) if a["status"] == "answered"}
    assert conversation == {"A1": 1, "A2": 0}


async def test_a_dialer_fault_fails_one_dial_and_logs_nothing_personal(db, caplog) -> None:
    store, audit = db
    load(store, csv_text(row("A1")))

    class BrokenDialer(ScriptedDialer):
        async def call(self, debt: DebtorCall) -> CallResult:
            raise RuntimeError(f"boom {debt.phone} {debt.name}")

    clock = Clock(datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI))
    with caplog.at_level(logging.DEBUG):
        [report] = await runner(store, audit, BrokenDialer(clock)).run_once()
    assert (report.status, report.state) == ("failed", "retry")
    assert json.loads(attempts(store)[0]["detail"]) == {"error": "RuntimeError"}
    exported = "".join(json.dumps(r.data, ensure_ascii=False) for r in audit.records())
    for secret in (NAME, PHONE, LAST4):
        assert secret not in caplog.text and secret not in exported


def test_dial_plan_routes_by_longest_prefix_and_sip_failures_map_to_statuses() -> None:
    from baresip import CallBusy, CallFailed, CallTimeout

    plan = DialPlan.parse(["127.0.0.1:5070", "+86=sip:{phone}@cn-gw:5060", "+8613=sip:{phone}@mobile-gw"])
    assert plan.uri("+12125550100") == "sip:+12125550100@127.0.0.1:5070"
    assert plan.uri("+8610555") == "sip:+8610555@cn-gw:5060" and plan.uri("+8613912345678").endswith("@mobile-gw")
    with pytest.raises(DialPlanError):
        DialPlan.parse(["a:1", "b:2"])
    with pytest.raises(DialPlanError):
        DialPlan.parse(["sip:x@y"])
    with pytest.raises(DialPlanError, match="no SIP route"):
        DialPlan.parse(["+1=h:1"]).uri("+86123")
    assert sip_failure_status(CallBusy("x", status=486)) == ("busy", 486)
    assert sip_failure_status(CallTimeout("x")) == ("no_answer", None)
    assert sip_failure_status(CallFailed("x", status=480)) == ("no_answer", 480)
    assert sip_failure_status(CallFailed("x", status=404)) == ("failed", 404)
    assert sip_failure_status(None) == ("failed", None)


# --- the command line ------------------------------------------------------------------------------------

def voicebot(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"VOICEBOT_DATA_DIR": str(data_dir)} if data_dir else {})}
    return subprocess.run([VOICEBOT, *args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_import_reports_bad_lines_and_report_shows_no_personal_data(tmp_path: Path) -> None:
    file = tmp_path / "november.csv"
    file.write_text(csv_text(row("A1"), row("A2", phone="12345"), row("A3", tz="Nowhere/Land", days="70")),
                    encoding="utf-8")
    db = tmp_path / "voicebot.db"
    imported = voicebot("campaign", "import", str(file), "--db", str(db))
    assert imported.returncode == 3, imported.stderr
    assert "campaign november: 2 added, 0 updated, 1 of 3 row(s) rejected" in imported.stdout
    assert "rejected: line 3: phone: not an international number" in imported.stderr
    assert "warning: line 4: tz: unknown time zone 'Nowhere/Land'" in imported.stderr
    report = voicebot("campaign", "report", "--db", str(db), "--accounts")
    assert report.returncode == 0, report.stderr
    assert "campaign november (from november.csv" in report.stdout and "2 accounts" in report.stdout
    assert "stages:   early 1, middle 0, late 1" in report.stdout and "pending 2" in report.stdout
    assert "A1\tearly\tpending\tdials 0" in report.stdout
    for out in (imported.stdout + imported.stderr, report.stdout):
        assert NAME not in out and PHONE not in out and "12345" not in out
    as_json = json.loads(voicebot("campaign", "report", "--db", str(db), "--json").stdout)
    assert as_json["accounts"] == 2 and as_json["dials"]["answered"] == 0
    missing = voicebot("campaign", "report", "--db", str(db), "--campaign", "nope")
    assert missing.returncode == 1 and "no campaign 'nope'" in missing.stderr
    audit = voicebot("audit", "export", "--db", str(db))
    assert '"campaign_import"' in audit.stdout and NAME not in audit.stdout


# --- real SIP peers --------------------------------------------------------------------------------------

needs_peers = pytest.mark.skipif(not shutil.which("sipp"), reason="needs sipp")


def pinned_clock(at: datetime) -> Callable[[], datetime]:
    """`at`, running at real speed: live calls' own clocks keep them inside the hours."""
    t0 = time.monotonic()
    return lambda: at + timedelta(seconds=time.monotonic() - t0)


async def callee(peers: Peers, tmp_path: Path, name: str) -> int:
    """A real sipp callee on 127.0.0.1 (tests/sip/uas_<name>.xml); returns its port once it listens.

    The answering one is sipp's own uas (echoing our audio) with a short ring first: see uas_ring_answer.xml.
    """
    port, scenario = free_port(), tmp_path / f"uas_{name}.xml"
    shutil.copy(SIP_DIR / f"uas_{name}.xml", scenario)
    await peers.sipp(name, scenario, "", *(["-rtp_echo"] if name == "ring_answer" else []), port=port)
    await listening(port)
    return port


async def callees(peers: Peers, tmp_path: Path) -> dict[str, int]:
    """Three callees: one answering (after a ring), one busy (486 after a ring), one ringing until we give up."""
    return {"answer": await callee(peers, tmp_path, "ring_answer"), "busy": await callee(peers, tmp_path, "busy"),
            "ring": await callee(peers, tmp_path, "ring")}


PEER_PHONES = {"answer": "+8613900000001", "busy": "+8613900000002", "ring": "+8613900000003"}


@pytest.mark.sip
@pytest.mark.model
@needs_peers
async def test_once_run_dials_real_sip_callees_answered_busy_and_unanswered(engines, peers: Peers, db,
                                                                             tmp_path: Path, caplog) -> None:
    store, _ = db
    caplog.set_level(logging.DEBUG)
    ports = await callees(peers, tmp_path)
    load(store, csv_text(*(row(f"A-{name}", phone=PEER_PHONES[name]) for name in ports)))
    plan = DialPlan.parse([f"{PEER_PHONES[n]}=sip:{{phone}}@127.0.0.1:{p}" for n, p in ports.items()])
    at = datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI)
    reports = await run_sip_campaign(
        engines, store, engines.rules.pack, plan, listen=f"127.0.0.1:{sip_port()}", once=True, now=lambda: at,
        settings=SipSettings(dial_timeout_s=3, rtp_timeout_s=5, clock=pinned_clock(at)),
        converse=functools.partial(hold_then_hang_up, hold_s=1.5))
    by_account = {r.account_id: r for r in reports}
    assert {a: (r.status, r.state) for a, r in by_account.items()} == {
        "A-answer": ("answered", "done"), "A-busy": ("busy", "retry"), "A-ring": ("no_answer", "retry")}, (
        attempts(store), peers.log("busy"))
    for proc, name in zip(peers.procs, ("ring_answer", "busy", "ring"), strict=True):
        assert await finished(proc) == 0, peers.log(name)
    rows = {a["account_id"]: a for a in attempts(store)}
    assert json.loads(rows["A-busy"]["detail"]) == {"error": "CallBusy", "sip_status": 486}
    assert json.loads(rows["A-ring"]["detail"])["error"] == "CallTimeout"
    call_id = rows["A-answer"]["call_id"]
    kinds = [r.kind for r in engines.audit.records() if r.call_id == call_id]
    assert kinds[0] == "call_start" and "call_end" in kinds and kinds[-1] == "call_outcome"
    end = next(r for r in engines.audit.records() if r.call_id == call_id and r.kind == "call_end")
    assert end.data["reason"] == "hangup: the bot's call is complete"
    assert engines.audit.verify().ok
    assert caplog.records and not [p for p in PEER_PHONES.values() if p in caplog.text or p[1:] in caplog.text]


@pytest.mark.sip
@pytest.mark.model
@needs_peers
async def test_cli_run_once_calls_a_real_sipp_callee_then_reports(peers: Peers, tmp_path: Path,
                                                                   midday_zone: str) -> None:
    port = await callee(peers, tmp_path, "ring_answer")
    file = tmp_path / "live.csv"
    file.write_text(csv_text(row("L1", tz=midday_zone, phone=PEER_PHONES["answer"])), encoding="utf-8")
    db = tmp_path / "voicebot.db"
    run = await asyncio.to_thread(voicebot, "campaign", "run", str(file), "--once", "--db", str(db),
                                  "--sip-proxy", f"127.0.0.1:{port}", "--sip-listen", f"127.0.0.1:{sip_port()}",
                                  "--dial-timeout-s", "10", "--no-bot", data_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    [line] = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
    assert (line["account_id"], line["status"], line["kind"], line["state"]) == ("L1", "answered", "answered", "done")
    assert await finished(peers.procs[0]) == 0, peers.log("ring_answer")
    report = voicebot("campaign", "report", "--db", str(db))
    assert "dials:    1 (answered 1, no_answer 0, busy 0, failed 0)" in report.stdout
    assert "outcomes: answered 1" in report.stdout and "nothing left to dial" in report.stdout
    assert PEER_PHONES["answer"] not in run.stdout + run.stderr + report.stdout
    assert list((tmp_path / "recordings").glob("*")), "the call's recordings belong in the data folder"
