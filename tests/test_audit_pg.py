"""The audit log on a real PostgreSQL server, as several nodes share it: one chain under concurrent appends from three
processes, the schema migrated by yoyo, UPDATE and DELETE refused, tampering found, a node with another key refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from voicebot.audit import AuditLog, AuditTamperedError
from voicebot.audit_pg import PgAuditLog

APPENDER = """
import sys
from pathlib import Path
from voicebot.audit_pg import PgAuditLog
log = PgAuditLog.open(sys.argv[1], Path(sys.argv[2]))
for i in range(int(sys.argv[4])):
    log.append("node_event", {"node": sys.argv[3], "i": i}, actor=sys.argv[3])
log.close()
"""


def test_the_chain_verifies_and_exports_as_the_sqlite_log_does(pg_url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    with PgAuditLog.open(pg_url, key) as log, AuditLog.open(tmp_path / "audit.db", key) as sqlite_log:
        for i in range(5):
            for each in (log, sqlite_log):
                each.append("flag", {"i": i, "words": "你好"}, call_id="c1", actor="agent-7")
        assert log.verify().ok and log.verify().records == 5
        assert [r.data for r in log.records(since_seq=3)] == [{"i": 3, "words": "你好"}, {"i": 4, "words": "你好"}]
        exported, expected = io.StringIO(), io.StringIO()
        assert log.export(exported, "jsonl") == sqlite_log.export(expected, "jsonl") == 5
    strip = lambda text: [{k: v for k, v in json.loads(line).items() if k not in ("at", "hash", "prev_hash")}  # noqa: E731
                          for line in text.splitlines()]
    assert strip(exported.getvalue()) == strip(expected.getvalue())


def test_three_nodes_appending_at_once_keep_one_chain(pg_url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    nodes = [subprocess.Popen([sys.executable, "-c", APPENDER, pg_url, str(key), f"node-{n}", "150"],
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    for node in nodes:
        assert node.wait(120) == 0, node.stderr.read()
    with PgAuditLog.open(pg_url, key) as log:
        report = log.verify()
        records = list(log.records())
    assert report.ok and report.records == 450, report
    assert [r.seq for r in records] == list(range(1, 451))
    for n in range(3):
        assert [r.data["i"] for r in records if r.actor == f"node-{n}"] == list(range(150))


def test_threads_of_one_node_keep_one_chain(pg_url: str, tmp_path: Path) -> None:
    with PgAuditLog.open(pg_url, tmp_path / "audit.key") as log:
        threads = [threading.Thread(target=lambda t=t: [log.append("t", {"t": t, "i": i}) for i in range(50)])
                   for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.verify().ok and log.verify().records == 200


def test_records_cannot_be_changed_and_a_changed_one_is_found(pg_url: str, tmp_path: Path) -> None:
    with PgAuditLog.open(pg_url, tmp_path / "audit.key") as log:
        for i in range(3):
            log.append("flag", {"i": i})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for sql in ("UPDATE audit SET data = '{}' WHERE seq = 2", "DELETE FROM audit WHERE seq = 3"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
        conn.execute("ALTER TABLE audit DISABLE TRIGGER audit_append_only")  # an attacker with the database's owner
        conn.execute("""UPDATE audit SET data = '{"i":99}' WHERE seq = 2""")
    with PgAuditLog.open(pg_url, tmp_path / "audit.key") as log:
        report = log.verify()
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 2, "record 2 was altered")


def test_a_node_with_another_key_is_refused(pg_url: str, tmp_path: Path) -> None:
    with PgAuditLog.open(pg_url, tmp_path / "audit.key") as log:
        log.append("flag", {"i": 0})
    (tmp_path / "other.key").write_bytes(b"k" * 32)
    with PgAuditLog.open(pg_url, tmp_path / "other.key") as stranger:
        with pytest.raises(AuditTamperedError, match="key is wrong"):
            stranger.append("flag", {"i": 1})
        assert not stranger.verify().ok
    with PgAuditLog.open(pg_url.replace("voicebot@", "voicebot:password@"), tmp_path / "audit.key") as named:
        assert "password" not in named.name and "voicebot" not in named.name


def test_cli_verifies_and_exports_the_shared_log(pg_url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    with PgAuditLog.open(pg_url, key) as log:
        log.append("flag", {"i": 0}, call_id="c1")
    voicebot = str(Path(sys.executable).parent / "voicebot")
    env = {"PATH": "/usr/bin:/bin", "VOICEBOT_DATA_DIR": str(tmp_path), "VOICEBOT_DB": pg_url}
    ok = subprocess.run([voicebot, "audit", "verify", "--key", str(key)], capture_output=True, text=True, env=env,
                        timeout=60)
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok: 1 records, chain intact"), ok.stderr
    exported = subprocess.run([voicebot, "audit", "export", "--key", str(key)], capture_output=True, text=True,
                              env=env, timeout=60)
    assert json.loads(exported.stdout)["call_id"] == "c1"
    gone = pg_url.replace(pg_url.split("@")[1].split("/")[0], "127.0.0.1:9")  # nothing listens on port 9
    refused = subprocess.run([voicebot, "audit", "verify", "--db", gone.replace("voicebot@", "voicebot:s3cret@"),
                              "--key", str(key)], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1 and "cannot open the shared audit log at 127.0.0.1:9/" in refused.stderr
    assert "s3cret" not in refused.stderr + refused.stdout and "Traceback" not in refused.stderr
    for bad in ("postgresql://voicebot:s3cret@h:notaport/db", "mysql://voicebot:s3cret@h/db"):
        malformed = subprocess.run([voicebot, "audit", "verify", "--db", bad, "--key", str(key)], capture_output=True,
                                   text=True, env=env, timeout=60)
        assert malformed.returncode == 1 and "postgresql://user@host:port/database URL" in malformed.stderr
        assert "s3cret" not in malformed.stderr and "Traceback" not in malformed.stderr

