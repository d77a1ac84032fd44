"""Collection scheduling figures: how fast a strategy plans 100,000 accounts (and imports them), how many fall due,
and how big the database is per 100,000 accounts with a week of dials behind them.

Prints one JSON line per figure. Usage: python bench/collect.py [--accounts 100000]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.figures import emit
from compliance_rules.pack import load_pack
from voicebot.audit import AuditLog
from voicebot.campaigns.accounts import Account
from voicebot.campaigns.collect import Planner
from voicebot.campaigns.importer import parse_text
from voicebot.campaigns.lifecycle import DebtBook
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.strategy import load_strategy
from voicebot.campaigns.tasks import TaskBook

HEADER = "name,phone,tz,amount,days_overdue,lender,id_last4,due_date,account_id,agent_id"
START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def campaign_csv(n: int) -> str:
    """n synthetic accounts (invented names and numbers), spread over the three stages."""
    rows = [f"用户{i},+86139{i:08d},Asia/Shanghai,{1000 + i % 5000}.00,{i % 90},示例银行,{i % 10000:04d},"
            f"2026-10-01,A{i},col{i % 50}" for i in range(n)]
    return "\n".join([HEADER, *rows]) + "\n"


def dial_week(db: Path, accounts: list[Account]) -> None:
    """Three unanswered dials per account over a week, as a collection run would have left them (written in one
    transaction here: a run writes each as it happens)."""
    rows = [(uuid.uuid4().hex, a.campaign, a.account_id, a.debt, (START + timedelta(days=day)).isoformat(),
             (START + timedelta(days=day, seconds=40)).isoformat(), "no_answer", 0)
            for a in accounts for day in (0, 2, 4)]
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO attempts (attempt_id, campaign, account_id, debt, started_at, ended_at, status, "
                         "conversation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    n = parser.parse_args().accounts
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "voicebot.db"
        with AuditLog.open(db) as audit, CampaignStore.open(db) as store, DebtBook.open(db, audit) as book, \
                TaskBook.open(db, audit) as tasks:
            parsed = parse_text(campaign_csv(n))
            started = time.perf_counter()
            store.import_rows("bench", parsed.rows, source="bench.csv", now=START)
            emit("import_rate", n / (time.perf_counter() - started), "accounts/s", accounts=n)
            strategy = load_strategy("cn-standard")
            planner = Planner(store, book, strategy, tasks, load_pack(strategy.pack))
            started = time.perf_counter()
            planner.replan(START)
            emit("plan_rate_fresh", n / (time.perf_counter() - started), "accounts/s", accounts=n)
            dial_week(db, store.accounts())
            started = time.perf_counter()
            planner.replan(START + timedelta(days=5))
            emit("plan_rate_after_a_week", n / (time.perf_counter() - started), "accounts/s", accounts=n,
                 dials=3 * n)
            started = time.perf_counter()
            due = store.due(START + timedelta(days=8))
            emit("due_query_s", time.perf_counter() - started, "s", accounts=n, due=len(due))
            store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        size = sum(p.stat().st_size for p in Path(tmp).glob("voicebot.db*"))
        emit("db_size_per_100k_accounts", size / n * 100_000 / 2**20, "MiB", accounts=n, dials_per_account=3)


if __name__ == "__main__":
    main()
