"""Two diallers working one campaign on one database, each on its own connection as two processes are: a debt is
never dialled twice at once nor past its cadence, and the dial of a dialler that died is kept and taken over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_campaign import Clock, csv_text, load, row

from compliance_rules.pack import load_pack
from compliance_rules.timing import Attempt, pre_dial_check
from voicebot.audit import AuditLog
from voicebot.audit_pg import PgAuditLog
from voicebot.campaigns import CallResult, CampaignRunner, CampaignStore, DebtorCall, RetryPolicy
from voicebot.campaigns.accounts import Account
from voicebot.campaigns.crypto import PiiKeyError
from voicebot.campaigns.store import STALE_DIAL

MONDAY_9 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
PACK = load_pack("cn-collection")


class RingingDialer:
    """Keeps each call ringing a moment, and notes a debt dialled while it is already ringing."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.ringing, self.overlaps = clock, set(), []
        self.calls: list[tuple[datetime, DebtorCall]] = []

    async def call(self, debt: DebtorCall) -> CallResult:
        if debt.account_id in self.ringing:
            self.overlaps.append(debt.account_id)
        self.ringing.add(debt.account_id)
        self.calls.append((self.clock(), debt))
        await asyncio.sleep(0.02)
        self.ringing.discard(debt.account_id)
        return CallResult(status="no_answer")


def diallers(audit: AuditLog, tmp_path: Path, clock: Clock, dialer: RingingDialer) -> list[CampaignRunner]:
    """Two runners, each on its own connection to the database beside `audit` (SQLite or PostgreSQL)."""
    stores = [CampaignStore.open(audit.path, key_path=tmp_path / "pii.key") for _ in range(2)]
    policy = RetryPolicy(max_attempts=5, retry_after=timedelta(minutes=30))
    return [CampaignRunner(store, dialer, PACK, audit, now=clock, sleep=clock.sleep, policy=policy)
                   for store in stores]


async def test_two_diallers_never_dial_a_debt_at_once_nor_past_its_cadence(audit_log: AuditLog, tmp_path: Path) -> None:
    clock = Clock(MONDAY_9)
    dialer = RingingDialer(clock)
    runners = diallers(audit_log, tmp_path, clock, dialer)
    load(runners[0].store, csv_text(*(row(f"A{i}", phone=f"+861391234{i:04d}") for i in range(12))), at=clock())
    for _ in range(5):
        await asyncio.gather(*(r.run_once() for r in runners))
        clock.set(clock() + timedelta(hours=2))
    assert dialer.overlaps == [], "no debt was dialled while it was ringing"
    per_account = Counter(debt.account_id for _, debt in dialer.calls)
    assert per_account == dict.fromkeys((f"A{i}" for i in range(12)), 3), "3 a day, the pack's cadence, in all"
    for account in per_account:
        dials = [at for at, debt in dialer.calls if debt.account_id == account]
        for i, at in enumerate(dials):
            assert pre_dial_check(PACK, at, ["Asia/Shanghai"], [Attempt(d) for d in dials[:i]]).allowed
    assert audit_log.verify().ok


async def test_a_dial_whose_dialler_died_is_kept_and_taken_over(audit_log: AuditLog, tmp_path: Path) -> None:
    clock = Clock(MONDAY_9)
    dialer = RingingDialer(clock)
    dead, alive = diallers(audit_log, tmp_path, clock, dialer)
    load(dead.store, csv_text(row("A1")), at=clock())
    account: Account = dead.store.due(clock())[0]
    claim = dead.store.claim(account, clock(), lambda attempts: pre_dial_check(PACK, clock(), ["Asia/Shanghai"]))
    assert claim.attempt_id is not None  # ... and its dialler is killed mid-call

    clock.set(clock() + timedelta(minutes=5))
    assert await alive.run_once() == [] and dialer.calls == [], "a dial that may still be ringing is left alone"
    clock.set(MONDAY_9 + STALE_DIAL + timedelta(minutes=1))
    [report] = await alive.run_once()
    assert report.account_id == "A1" and len(dialer.calls) == 1, "the other dialler took the account over"
    kept = alive.store.query("SELECT status, detail FROM attempts WHERE attempt_id = ?", [claim.attempt_id])
    assert kept == [{"status": "failed", "detail": '{"error": "interrupted"}'}], "the dead dialler's dial is kept"


async def test_a_claimed_account_whose_sealed_fields_do_not_open_is_left_unclaimed(audit_log: AuditLog,
                                                                                    tmp_path: Path) -> None:
    clock = Clock(MONDAY_9)
    dialer = RingingDialer(clock)
    runner, _ = diallers(audit_log, tmp_path, clock, dialer)
    load(runner.store, csv_text(row("A1"), row("A2", phone="+8613900000002")), at=clock())
    blob = runner.store.query("SELECT phone_sealed FROM accounts WHERE account_id = 'A2'")[0]["phone_sealed"]
    with runner.store._db.write():
        runner.store._db.execute("UPDATE accounts SET phone_sealed = ? WHERE account_id = 'A1'", [blob])
    with pytest.raises(PiiKeyError, match="phone field does not open"):
        await runner.attempt(runner.store.account("c1", "A1"))
    assert dialer.calls == [] and runner.store.query("SELECT * FROM attempts") == [], \
        "nothing was dialled, and no dial is left claimed"


def test_diallers_on_their_own_threads_and_connections_claim_each_account_once(audit_log: AuditLog,
                                                                                tmp_path: Path) -> None:
    with CampaignStore.open(audit_log.path, key_path=tmp_path / "pii.key") as store:
        load(store, csv_text(*(row(f"A{i}", phone=f"+861391234{i:04d}") for i in range(60))), at=MONDAY_9)
    won: list[list[str]] = [[], [], []]

    def dialler(n: int) -> None:
        with CampaignStore.open(audit_log.path, key_path=tmp_path / "pii.key") as own:
            for account in own.due(MONDAY_9):
                gate = lambda attempts: pre_dial_check(PACK, MONDAY_9, ["Asia/Shanghai"], attempts)  # noqa: E731
                if own.claim(account, MONDAY_9, gate).attempt_id:
                    won[n].append(account.account_id)

    threads = [threading.Thread(target=dialler, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [a for w in won for a in w]
    assert sorted(claimed) == sorted(f"A{i}" for i in range(60)), "each account claimed exactly once, by one dialler"


DIALLER = """
import asyncio, sys
from datetime import datetime
from pathlib import Path
from compliance_rules.pack import load_pack
from voicebot.audit_pg import PgAuditLog
from voicebot.campaigns import CampaignRunner, CampaignStore
url, folder, at = sys.argv[1], Path(sys.argv[2]), datetime.fromisoformat(sys.argv[3])

class Stuck:
    async def call(self, debt):
        (folder / "ringing").write_text(debt.account_id)
        await asyncio.sleep(3600)  # killed here, mid-call

audit = PgAuditLog.open(url, folder / "audit.key")
store = CampaignStore.open(url, key_path=folder / "pii.key")
asyncio.run(CampaignRunner(store, Stuck(), load_pack("cn-collection"), audit, now=lambda: at).run_once())
"""


async def test_a_dialler_process_killed_mid_call_loses_no_dial_and_another_takes_its_account_over(
        pg_url: str, tmp_path: Path) -> None:
    with PgAuditLog.open(pg_url, tmp_path / "audit.key") as audit, \
            CampaignStore.open(pg_url, key_path=tmp_path / "pii.key") as store:
        load(store, csv_text(row("A1")), at=MONDAY_9)
    node = subprocess.Popen([sys.executable, "-c", DIALLER, pg_url, str(tmp_path), MONDAY_9.isoformat()])
    for _ in range(300):
        if (tmp_path / "ringing").exists():
            break
        await asyncio.sleep(0.1)
    os.kill(node.pid, signal.SIGKILL)
    node.wait()
    assert (tmp_path / "ringing").read_text() == "A1"

    clock = Clock(MONDAY_9 + timedelta(minutes=5))
    dialer = RingingDialer(clock)
    with PgAuditLog.open(pg_url, tmp_path / "audit.key") as audit:
        [alive, _] = diallers(audit, tmp_path, clock, dialer)
        assert await alive.run_once() == [], "the killed node's dial may still ring: its account is left alone"
        clock.set(MONDAY_9 + STALE_DIAL + timedelta(minutes=1))
        [report] = await alive.run_once()
        dials = alive.store.query("SELECT status, detail FROM attempts ORDER BY started_at, rowid")
        assert audit.verify().ok
    assert report.account_id == "A1" and len(dialer.calls) == 1, "the other node took the account over"
    assert dials[0] == {"status": "failed", "detail": '{"error": "interrupted"}'}, "the killed node's dial is kept"
    assert [d["status"] for d in dials] == ["failed", "no_answer"]
