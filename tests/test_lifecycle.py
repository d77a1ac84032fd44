"""A debt's lifecycle across campaigns: promises kept by payments or broken, disputes that pause every campaign until
a user resolves them, cease requests and wrong numbers never dialled again, payment and cease files by line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pg_server import stored_bytes
from test_campaign import VOICEBOT, Clock, ScriptedDialer, csv_text, load, row

from compliance_rules.pack import load_pack
from voicebot.audit import AuditLog
from voicebot.campaigns import CallResult, CampaignRunner, CampaignStore
from voicebot.campaigns.crypto import PiiKeyError
from voicebot.campaigns.importer import CampaignFileError
from voicebot.campaigns.lifecycle import DebtBook, DebtStateError
from voicebot.campaigns.lists import apply_cease, apply_payments, parse_list
from voicebot.campaigns.pauses import Pauses

MONDAY_10 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DEBT = "示例银行/A1"


@pytest.fixture
def db(audit_log: AuditLog, tmp_path: Path) -> Iterator[tuple[CampaignStore, AuditLog, DebtBook]]:
    store = CampaignStore.open(audit_log.path, key_path=tmp_path / "voicebot.db.pii.key")
    book = DebtBook.open(audit_log.path, audit_log, store.cipher)
    yield store, audit_log, book
    book.close()
    store.close()


def runner(store: CampaignStore, audit: AuditLog, dialer: ScriptedDialer, *, book: DebtBook,
           campaign: str | None = None) -> CampaignRunner:
    return CampaignRunner(store, dialer, load_pack("cn-collection"), audit, now=dialer.clock,
                          sleep=dialer.clock.sleep, book=book, campaign=campaign)


def states(audit: AuditLog) -> list[tuple[str, str, str]]:
    return [(r.data["debt"], r.data["to"], r.data["cause"]) for r in audit.records() if r.kind == "debt_state"]


async def test_a_dispute_pauses_every_campaign_until_a_user_resolves_it(db) -> None:
    store, audit, book = db
    clock = Clock(MONDAY_10)
    load(store, csv_text(row("A1")), campaign="early")
    dialer = ScriptedDialer(clock, CallResult(status="answered", call_id="call-1", outcome={"kind": "dispute"}))
    [first] = await runner(store, audit, dialer, book=book).run_once()
    assert (first.kind, book.status(DEBT).state) == ("dispute", "disputed")

    load(store, csv_text(row("A1")), campaign="middle")  # the same debt in the next stage's campaign
    clock.set(MONDAY_10 + timedelta(days=3))
    [refused] = await runner(store, audit, dialer, campaign="middle", book=book).run_once()
    assert refused.status == "refused" and "disputes the debt" in refused.reasons[0]
    assert len(dialer.calls) == 1, "a disputed debt is dialled by no campaign"

    book.resolve(DEBT, user="lee", note="王女士 sent the statement: amount correct", at=clock())
    assert store.release(DEBT, clock()) == 1
    assert book.history(DEBT)[-1]["note"] == "王女士 sent the statement: amount correct"
    assert "王女士".encode() not in stored_bytes(audit.path), \
        "a user's note is sealed at rest (and not in the audit log)"
    with DebtBook.open(audit.path, audit) as keyless:
        assert keyless.history(DEBT)[-1]["note"] is None
        with pytest.raises(PiiKeyError):
            keyless.change(DEBT, "closed", cause="user:lee", at=clock(), note="written without the key")
    [again] = await runner(store, audit, dialer, campaign="middle", book=book).run_once()
    assert again.status == "no_answer" and len(dialer.calls) == 2
    assert states(audit) == [(DEBT, "disputed", "call:call-1"), (DEBT, "reminding", "user:lee")]
    with pytest.raises(DebtStateError):
        book.resolve(DEBT, user="lee", note="again", at=clock())


async def test_a_promise_is_kept_by_a_payment_and_another_broken_after_its_date(db) -> None:
    store, audit, book = db
    clock = Clock(MONDAY_10)
    load(store, csv_text(row("A1", amount="2000.00"), row("A2", amount="900.00", phone="+8613912345679")))
    dialer = ScriptedDialer(
        clock, CallResult(status="answered", call_id="c1", outcome={"kind": "promise_to_pay", "ptp_date": "2026-11-10",
                                                                   "ptp_amount": "1200"}),
        CallResult(status="answered", call_id="c2", outcome={"kind": "promise_to_pay", "ptp_date": "2026-11-05",
                                                            "ptp_amount": "900"}))
    await runner(store, audit, dialer, book=book).run_once()
    promised = book.status(DEBT)
    assert (promised.state, promised.promise_date, promised.promise_amount) == (
        "promised", date(2026, 11, 10), Decimal("1200"))

    rows, problems = parse_list("lender,account_id,amount,paid_on\n示例银行,A1,1200.00,2026-11-09\n", "payments")
    assert problems == []
    [kept] = apply_payments(book, store, rows, source="pay.csv")
    assert (kept.state, kept.paid) == ("promise_kept", Decimal("1200.00"))
    assert book.break_overdue_promises(datetime(2026, 11, 7, 9, tzinfo=UTC)) == ["示例银行/A2"]
    assert book.status("示例银行/A2").state == "promise_broken"
    history = [(h["from_state"], h["to_state"], h["cause"]) for h in book.history(DEBT)]
    assert history == [("new", "promised", "call:c1"), ("promised", "promise_kept", "import:pay.csv:2")]

    rows, _ = parse_list("lender,account_id,amount,paid_on\n示例银行,A1,800.00,2026-11-20\n", "payments")
    [paid] = apply_payments(book, store, rows, source="pay2.csv")
    assert (paid.state, paid.paid, paid.stopped) == ("paid", Decimal("2000.00"), "the debt is paid")


async def test_cease_requests_and_wrong_numbers_are_never_dialled_again(db) -> None:
    store, audit, book = db
    clock = Clock(MONDAY_10)
    load(store, csv_text(row("A1"), row("A2", phone="+8613912345679"), row("A3", phone="+8613912345670")))
    rows, problems = parse_list("lender,account_id\n示例银行,A1\n,A9\n示例银行,a/b\n", "cease")
    assert [(p.line, p.field) for p in problems] == [(3, "lender"), (4, "account_id")]
    apply_cease(book, rows, source="dnc.csv", now=clock())
    dialer = ScriptedDialer(clock, CallResult(status="answered", call_id="c2", outcome={"kind": "wrong_person"}),
                            default=CallResult(status="no_answer"))
    first = await runner(store, audit, dialer, book=book).run_once()
    assert [(r.account_id, r.status) for r in first] == [("A1", "refused"), ("A2", "answered"), ("A3", "no_answer")]
    assert book.status("示例银行/A2").state == "wrong_number"
    load(store, csv_text(row("A1"), row("A2", phone="+8613912345679")), campaign="next-week")
    clock.set(MONDAY_10 + timedelta(days=7))
    later = await runner(store, audit, dialer, campaign="next-week", book=book).run_once()
    assert [r.status for r in later] == ["refused", "refused"] and len(dialer.calls) == 2
    refusals = [r.data for r in audit.records() if r.kind == "dial_attempt" and not r.data["allowed"]]
    assert {d["debt_state"] for d in refusals} == {"cease", "wrong_number"}
    assert (DEBT, "cease", "import:dnc.csv:2") in states(audit)


def test_list_files_need_their_columns_and_never_echo_values() -> None:
    with pytest.raises(CampaignFileError, match="missing column"):
        parse_list("lender,amount\nx,1\n", "payments")
    _, problems = parse_list("lender,account_id,amount,paid_on\n示例银行,A1,-5,yesterday\n", "payments")
    assert [(p.line, p.field) for p in problems] == [(2, "amount"), (2, "paid_on")]
    assert all("yesterday" not in str(p) for p in problems)


def test_cli_imports_payments_and_cease_lists_and_resolves_disputes(tmp_path: Path) -> None:
    db_path = tmp_path / "voicebot.db"
    with AuditLog.open(db_path) as audit, DebtBook.open(db_path, audit) as book:
        book.change(DEBT, "disputed", cause="call:c1", at=MONDAY_10)
    cease = tmp_path / "dnc.csv"
    cease.write_text("lender,account_id\n示例银行,A7\n示例银行,\n", encoding="utf-8")
    run = subprocess.run([VOICEBOT, "campaign", "cease", str(cease), "--db", str(db_path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 3 and "line 3: account_id" in run.stderr
    assert json.loads(run.stdout) == {"debt": "示例银行/A7", "state": "cease", "paid": "0.00"}
    resolved = subprocess.run([VOICEBOT, "campaign", "resolve", DEBT, "--note", "checked", "--user", "lee",
                               "--db", str(db_path)], capture_output=True, text=True, timeout=60)
    assert resolved.returncode == 0, resolved.stderr
    shown = subprocess.run([VOICEBOT, "campaign", "debts", "--db", str(db_path)], capture_output=True, text=True,
                           timeout=60)
    assert json.loads(shown.stdout) == {"cease": 1, "reminding": 1}
    one = subprocess.run([VOICEBOT, "campaign", "debts", "--debt", DEBT, "--db", str(db_path)], capture_output=True,
                         text=True, timeout=60)
    assert [h["note"] for h in json.loads(one.stdout)["history"]] == [None, "checked"]
    unknown = subprocess.run([VOICEBOT, "campaign", "run", "--name", "x", "--sip-proxy", "127.0.0.1:5060",
                              "--strategy", "nope", "--db", str(db_path)], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1
    assert "no such strategy; bundled strategies: cn-standard, us-standard" in unknown.stderr


async def test_paused_accounts_campaigns_and_packs_are_not_dialled_until_resumed(db, tmp_path: Path) -> None:
    store, audit, book = db
    clock = Clock(MONDAY_10)
    load(store, csv_text(row("A1"), row("A2", phone="+8613912345679")))
    dialer = ScriptedDialer(clock)
    pauses = Pauses.open(store.target, audit)
    pauses.pause("account", "c1/A1", by="lee", at=clock())
    assert [r.account_id for r in await runner(store, audit, dialer, book=book).run_once()] == ["A2"]
    pauses.pause("pack", "cn-collection", by="lee", at=clock())
    clock.set(MONDAY_10 + timedelta(hours=3))
    assert await runner(store, audit, dialer, book=book).run_once() == []
    assert pauses.resume("pack", "cn-collection", by="lee") and pauses.resume("account", "c1/A1", by="lee")
    assert [r.account_id for r in await runner(store, audit, dialer, book=book).run_once()] == ["A1", "A2"]
    events = [(r.kind, r.data["scope"], r.actor) for r in audit.records() if r.kind in ("pause", "resume")]
    assert events == [("pause", "account", "lee"), ("pause", "pack", "lee"), ("resume", "pack", "lee"),
                      ("resume", "account", "lee")]
    pauses.close()
    run = subprocess.run([VOICEBOT, "campaign", "pause", "--campaign", "c1", "--pack", "x", "--user", "lee",
                          "--db", str(store.target)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "exactly one of" in run.stderr
