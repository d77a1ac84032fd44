"""Several nodes' figures: audit appends per second into one chain, from one process and from three at once, on a
PostgreSQL server (--pg URL; the run makes a fresh database there and drops it) against the SQLite log (a temporary
file); dial claims per second by two diallers sharing one campaign database, PostgreSQL against SQLite; and the
real-time calls two `voicebot serve` nodes on this machine hold together on that store (bench/live.py's threat call
and criterion).

Prints one JSON line per figure.
Usage: python bench/cluster.py --pg postgresql://user@host:port/db [--records 2000] [--calls 2,4,6,8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.collect import START, campaign_csv
from bench.figures import emit
from bench.live import REALTIME_P95_S, call_frames, delay_p95, round_of, start_server, stop_server
from compliance_rules.timing import Decision
from voicebot.audit import AuditLog
from voicebot.audit_pg import PgAuditLog
from voicebot.campaigns.importer import parse_text
from voicebot.campaigns.store import CampaignStore
from voicebot.config import load_config

NODE = """
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
from voicebot.audit import AuditLog
from voicebot.audit_pg import PgAuditLog
where, key, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
log = PgAuditLog.open(where, key) if where.startswith("postgresql://") else AuditLog.open(Path(where), key)
for i in range(n):
    log.append("bench", {"i": i, "words": "您好，这里是示例银行"}, call_id="c", actor="node")
log.close()
"""


def appends(where: str, key: Path, records: int, nodes: int) -> float:
    """Records per second that `nodes` processes append together, each `records`, once their logs are open."""
    opened = PgAuditLog.open(where, key) if where.startswith("postgresql://") else AuditLog.open(Path(where), key)
    opened.close()
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", NODE, where, str(key), str(records)],
                              cwd=Path(__file__).resolve().parent.parent) for _ in range(nodes)]
    if any(p.wait() for p in procs):
        raise SystemExit("an appending process failed")
    return nodes * records / (time.perf_counter() - started)


def claims(target: Path | str, key: Path, accounts: int) -> tuple[float, int]:
    """Claims per second when two diallers, each on its own connection, claim every due account of a fresh campaign
    at once; and how many accounts both claimed (0 is right)."""
    campaign = f"bench-{uuid.uuid4().hex[:8]}"
    with CampaignStore.open(target, key_path=key) as store:
        store.import_rows(campaign, parse_text(campaign_csv(accounts)).rows, source="bench.csv", now=START)
    won: list[list[str]] = [[], []]
    allow = Decision(allowed=True, reasons=(), zones=("Asia/Shanghai",))

    def dialler(n: int) -> None:
        with CampaignStore.open(target, key_path=key) as store:
            for account in store.due(START, campaign):
                if store.claim(account, START, lambda attempts: allow).attempt_id:
                    won[n].append(account.debt)

    threads = [threading.Thread(target=dialler, args=(n,)) for n in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 2 * accounts / (time.perf_counter() - started), len(set(won[0]) & set(won[1]))


def calls_per_node(pg: str, data: Path, rounds: list[int]) -> None:
    """Rounds of concurrent calls dealt in turn to two nodes sharing the store at `pg` (and the key files in `data`),
    until one is not kept in real time; the most kept, in all and per node."""
    frames, token = call_frames(load_config().shared_dir), secrets.token_urlsafe(24)
    ports, procs = (18801, 18802), []
    try:
        for port in ports:  # one machine: one data folder, so the same key files
            procs.append(start_server(port, data, token, db=pg))
        urls = [f"http://127.0.0.1:{port}/media/twilio?token={token}" for port in ports]
        best = 0
        for n in rounds:
            hung = [d for d in asyncio.run(round_of(n, urls, frames)) if d is not None]
            p95 = delay_p95(hung)
            emit("hangup_delay_p95_two_nodes", p95, "s", calls=n, hung_up=len(hung))
            if len(hung) < n or p95 > REALTIME_P95_S:
                break
            best = n
        emit("concurrent_realtime_calls_two_nodes", best, "calls", per_node=best / 2, nodes=2,
             criterion=f"all hung up, p95 <= {REALTIME_P95_S} s")
    finally:
        for proc in procs:
            stop_server(proc)


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new database on the server at `url` for one run (its keys are the run's own), dropped after."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", required=True, help="a PostgreSQL server's URL (a fresh database is made there)")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--calls", default="2,4,6,8", help="concurrent calls per round, over both nodes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.pg) as pg:
        key = Path(tmp) / "audit.key"
        for nodes in (1, 3):
            for store, where in (("sqlite", str(Path(tmp) / f"audit{nodes}.db")), ("postgresql", pg)):
                emit(f"audit_appends_{store}_{nodes}_process", appends(where, key, args.records, nodes),
                     "records/s", records=args.records * nodes, chain="one, verified after")
        with PgAuditLog.open(pg, key) as log:
            report = log.verify()
        emit("audit_chain_verified_postgresql", float(report.ok), "bool", records=report.records)
        for store, target in (("sqlite", Path(tmp) / "campaign.db"), ("postgresql", pg)):
            rate, both = claims(target, Path(tmp) / "pii.key", 5000)
            emit(f"dial_claims_{store}_2_diallers", rate, "claims/s", accounts=5000, claimed_by_both=both)
        calls_per_node(pg, Path(tmp), [int(n) for n in args.calls.split(",")])


if __name__ == "__main__":
    main()
