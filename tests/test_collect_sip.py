"""Weeks of collection in simulated time with the bot on real SIP calls: a debtor process (a baresip user agent)
answers with real speech, keys or silence, or is busy, and the debts move by what the bot heard on the line."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from live_peers import PASSWORD, Peers, listening, signed_in_page, sip_port
from playwright.async_api import expect
from test_campaign import Clock, csv_text, load, row

import voicebot.bot
from compliance_rules.timing import Attempt, pre_dial_check
from voicebot.adapters.sip import SipAdapter, SipSettings
from voicebot.call import CallBoard
from voicebot.campaigns import CallResult, CampaignRunner, CampaignStore, DebtorCall, DialPlan
from voicebot.campaigns.dialer import SipDialer
from voicebot.campaigns.lifecycle import DebtBook
from voicebot.campaigns.lists import apply_cease, apply_payments, parse_list
from voicebot.campaigns.strategy import load_strategy
from voicebot.web.keys import AUTH
from voicebot.web.tasks import TASKS

pytestmark = [pytest.mark.sip, pytest.mark.model, pytest.mark.browser]

SHANGHAI = ZoneInfo("Asia/Shanghai")
ASSIGNED = datetime(2026, 11, 2, 9, 30, tzinfo=SHANGHAI)
BUSY, SILENT = ["busy"], []
VERIFY = ["c01", "dtmf:1234"]
"""'对，我是李娜，你说', then the last four digits of the ID keyed."""
PROMISE = [*VERIFY, "c05", "c05", "c05"]
"""'今天下午我就去还一千五' to the payment question, then again to the date and amount questions."""
DISPUTE = [*VERIFY, "c08"]
"""'这个金额跟我账单上的不一样'."""
HARDSHIP = [*VERIFY, "c18", "c05"]
"""'公司裁员了，我现在没有收入', then yes to a payment plan."""


@dataclass
class PlannedDebtors:
    """The campaign's dialer, telling the account's debtor process what to do on each dial first (busy once its
    plans run out); the call itself is the real SIP dialer's."""

    dialer: SipDialer
    folder: Path
    speech: Path
    clock: Clock
    plans: dict[str, list[list[str]]]
    calls: list[tuple[datetime, DebtorCall, CallResult]] = field(default_factory=list)

    async def call(self, debt: DebtorCall) -> CallResult:
        at, steps = self.clock(), self.plans[debt.account_id].pop(0) if self.plans[debt.account_id] else BUSY
        (self.folder / f"{debt.account_id}.plan").write_text("\n".join(
            s if s in BUSY or s.startswith("dtmf:") else str(self.speech / f"{s}.wav") for s in steps))
        result = await self.dialer.call(debt)
        self.calls.append((at, debt, result))
        return result

    def of(self, account: str) -> list[tuple[datetime, DebtorCall, CallResult]]:
        return [c for c in self.calls if c[1].account_id == account]


@pytest.fixture
async def collection(config, engines, peers: Peers, tmp_path: Path, shared: Path, monkeypatch):
    """`start(plans)`: a debtor process per account (phone +86139000000NN for account XN), and a collection runner
    on the SIP adapter dialling them, up to four at once; returns the runner and the dialer."""
    monkeypatch.setattr(voicebot.bot, "SILENCE_S", 3.0)
    clock, made = Clock(ASSIGNED.astimezone(UTC)), []

    async def start(plans: dict[str, list[list[str]]]) -> tuple[CampaignRunner, PlannedDebtors]:
        routes = []
        for account in plans:
            port = sip_port()
            (tmp_path / f"{account}.plan").write_text("busy")
            await peers.start(f"debtor-{account}", sys.executable, str(Path(__file__).with_name("sip_debtor.py")),
                              str(port), str(tmp_path / f"{account}.plan"))
            await listening(port)
            routes.append(f"{phone(account)}=127.0.0.1:{port}")
        adapter = SipAdapter(engines, CallBoard(), listen=f"127.0.0.1:{sip_port()}",
                             settings=SipSettings(dial_timeout_s=10, rtp_timeout_s=120, clock=clock))
        await adapter.start()
        store = CampaignStore.open(engines.audit.path)
        book = DebtBook.open(engines.audit.path, engines.audit, store.cipher)
        debtors = PlannedDebtors(SipDialer(adapter, DialPlan.parse(routes), bot=config), tmp_path,
                                 shared / "audio" / "tts-cmn" / "ulaw8k", clock, plans)
        runner = CampaignRunner(store, debtors, engines.rules.pack, engines.audit, now=clock, sleep=clock.sleep,
                                book=book, strategy=load_strategy("cn-standard"), idle=timedelta(hours=6),
                                concurrency=4)
        made.extend([adapter, runner, book, store])
        return runner, debtors

    yield start
    adapter, *stores = made
    await adapter.close()
    for store in stores:
        store.close()


def phone(account: str) -> str:
    return f"+86139000000{ord(account[0]) - ord('A')}{account[1]}"


def outcome(engines, result: CallResult) -> dict:
    [record] = [r for r in engines.audit.records() if r.kind == "bot_outcome" and r.call_id == result.call_id]
    return record.data


def history(book: DebtBook, account: str) -> list[tuple[str, str]]:
    return [(h["to_state"], h["cause"].split(":")[0]) for h in book.history(f"示例银行/{account}")]


async def test_weeks_of_collection_with_the_bot_on_real_sip_calls(collection, engines, console_server,
                                                                 browser) -> None:
    """A1 promises and pays, A2 promises and does not, A3 asked not to be called, A4 is worked into its middle stage,
    A5 disputes, H1 has lost their job; the first five calls are answered at once, later dials mostly find the line
    busy; H1's collector closes the hardship task the call raised in the console."""
    runner, debtors = await collection({"A1": [PROMISE], "A2": [PROMISE], "A4": [SILENT, BUSY, BUSY, SILENT],
                                        "A5": [DISPUTE], "H1": [HARDSHIP]})
    store, book, pack, clock = runner.store, runner.book, runner.pack, debtors.clock
    load(store, csv_text(*(row(a, days="25" if a == "A4" else "20", amount="3200.00", phone=phone(a), name="李娜",
                               last4="1234", agent="col1" if a == "H1" else "bot-1")
                           for a in ("A1", "A2", "A3", "A4", "A5", "H1"))), at=clock())
    rows, _ = parse_list("lender,account_id\n示例银行,A3\n", "cease")
    apply_cease(book, rows, source="cease.csv", now=clock())

    await runner.run(until=ASSIGNED + timedelta(hours=3))
    heard = {a: outcome(engines, debtors.of(a)[0][2]) for a in ("A1", "A2", "A4", "A5", "H1")}
    for said in (heard["A1"], heard["A2"]):
        assert (said["kind"], Decimal(said["promise_amount"]), said["promise_date"], said["script"]) == (
            "promise_to_pay", 1500, "2026-11-02", "cn-early"), "今天下午我就去还一千五, said on the call's own day"
    assert [heard[a]["kind"] for a in ("A4", "A5", "H1")] == ["silence", "dispute", "hardship_plan"]
    assert heard["A4"]["script"] == "cn-early"
    rows, problems = parse_list("lender,account_id,amount,paid_on\n示例银行,A1,1500.00,2026-11-02\n", "payments")
    assert problems == [] and [s.state for s in apply_payments(book, store, rows, source="pay.csv")] == [
        "promise_kept"]

    await runner.run(until=datetime(2026, 11, 5, 18, 0, tzinfo=SHANGHAI))
    assert history(book, "A2")[:2] == [("promised", "call"), ("promise_broken", "lifecycle")]
    broken_at = datetime.fromisoformat(book.history("示例银行/A2")[1]["at"])
    follow_up = debtors.of("A2")[1][0]
    assert timedelta(hours=23) <= follow_up - broken_at <= timedelta(days=1, hours=6), "followed up the day after"
    assert len(debtors.of("A5")) == 1 and history(book, "A5") == [("disputed", "call")]
    resolved_at = clock()
    book.resolve("示例银行/A5", user="sup", note="amount checked with the lender", at=resolved_at)

    await runner.run(until=ASSIGNED + timedelta(days=16))
    assert [at > resolved_at for at, _, _ in debtors.of("A5")] == [False, *[True] * (len(debtors.of("A5")) - 1)]
    assert len(debtors.of("A5")) > 1, "a dispute stops dialling until a user resolves it, then dialling resumes"
    assert debtors.of("A3") == [], "the cease list is never dialled"
    answered = [outcome(engines, result)["script"] for _, _, result in debtors.of("A4") if result.status == "answered"]
    assert answered == ["cn-early", "cn-middle"], "25 days overdue at first, past 31 on its fourth dial"
    for account in ("A1", "A2", "A4", "A5"):
        dials = [at for at, _, _ in debtors.of(account)]
        for i, at in enumerate(dials):
            assert pre_dial_check(pack, at, ["Asia/Shanghai"], [Attempt(d) for d in dials[:i]]).allowed, (account, i)
    assert runner.planner.strategy.contacts_met(assigned_at=ASSIGNED, dials=[at for at, _, _ in debtors.of("A4")],
                                                now=clock()) == {"first": True, "3_in_7d": True, "5_in_15d": True}
    await collector_closes_the_hardship_task(console_server, browser, engines, debtors.of("H1")[0][2].call_id)
    assert engines.audit.verify().ok


async def collector_closes_the_hardship_task(console_server, browser, engines, call_id: str) -> None:
    base, app = console_server
    app[AUTH].store.add_user("col1", "collector", PASSWORD)
    [task] = [t for t in app[TASKS].tasks() if t.kind == "hardship"]
    assert (task.account_id, task.assignee, task.cause) == ("H1", "col1", f"call:{call_id}")
    page = await signed_in_page(browser, base, "col1", [])
    await page.goto(base + "/tasks")
    row = page.locator(f'tr[data-task-id="{task.task_id}"]')
    await expect(row).to_contain_text("Hardship")
    await row.locator('input[data-field="note"]').fill("payment plan agreed: 3 × 1000")
    await row.locator('button[data-action="done"]').click()
    await expect(row).to_have_count(0)
    closed = app[TASKS].get(task.task_id)
    assert (closed.status, closed.done_by, closed.note) == ("done", "col1", "payment plan agreed: 3 × 1000")
    assert ("col1", "done", "hardship") in [(r.actor, r.data["event"], r.data["kind"]) for r in engines.audit.records()
                                            if r.kind == "task"]
