"""Several nodes' figures: audit appends per second into one chain, from one process and from three at once, on a
PostgreSQL server (--pg URL, a database this may fill) against the SQLite log (a temporary file); and dial claims
per second by two diallers sharing one campaign database, PostgreSQL against SQLite.

Prints one JSON line per figure. Usage: python bench/cluster.py --pg postgresql://user@host:port/db [--records 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.collect import START, campaign_csv
from bench.figures import emit
from compliance_rules.timing import Decision
from voicebot.audit import AuditLog
from voicebot.audit_pg import PgAuditLog
from voicebot.campaigns.importer import parse_text
from voicebot.campaigns.store import CampaignStore

NODE = """
import sys
from pathlib import Path
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", required=True, help="a PostgreSQL database URL the bench may write to")
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "audit.key"
        for nodes in (1, 3):
            for store, where in (("sqlite", str(Path(tmp) / f"audit{nodes}.db")), ("postgresql", args.pg)):
                emit(f"audit_appends_{store}_{nodes}_process", appends(where, key, args.records, nodes),
                     "records/s", records=args.records * nodes, chain="one, verified after")
        with PgAuditLog.open(args.pg, key) as log:
            report = log.verify()
        emit("audit_chain_verified_postgresql", float(report.ok), "bool", records=report.records)
        for store, target in (("sqlite", Path(tmp) / "campaign.db"), ("postgresql", args.pg)):
            rate, both = claims(target, Path(tmp) / "pii.key", 5000)
            emit(f"dial_claims_{store}_2_diallers", rate, "claims/s", accounts=5000, claimed_by_both=both)


if __name__ == "__main__":
    main()
