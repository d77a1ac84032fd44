"""The audit log: hash chain, append-only triggers, tamper detection, export and durability under kill -9."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from voicebot.audit import GENESIS_HASH, AuditKeyError, AuditLog, AuditTamperedError, VerifyReport

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KILL_SCRIPT = """
import sys
from pathlib import Path
from voicebot.audit import AuditLog
log = AuditLog.open(Path(sys.argv[1]))
i = 0
while True:
    record = log.append("flag", {"i": i, "text": "催收话术"}, call_id=f"call-{i % 7}", actor="engine")
    print(record.seq, flush=True)
    i += 1
"""


def _filled_log(tmp_path: Path, count: int = 10) -> AuditLog:
    log = AuditLog.open(tmp_path / "audit" / "audit.db")
    for i in range(count):
        log.append("flag", {"i": i, "rule": "threat", "text": "你再不还钱"}, call_id="call-1", actor="engine")
    return log


def _tamper(db_path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Play an attacker with file access: drop the triggers, then run raw SQL."""
    conn = sqlite3.connect(db_path)
    for name in ("audit_no_update", "audit_no_delete", "audit_head_no_delete"):
        conn.execute(f"DROP TRIGGER {name}")
    for sql, params in statements:
        conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_append_chains_consecutive_records_and_verifies(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path / "a" / "audit.db")
    first = log.append("call_start", {"leg": "customer"}, call_id="c1", actor="engine")
    second = log.append("operator_action", {"action": "mute"}, call_id="c1", actor="alice")
    third = log.append("qa_sample", {"score": 0.5})
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3
    assert second.actor == "alice" and second.call_id == "c1" and second.data == {"action": "mute"}
    assert third.call_id is None and third.actor is None
    assert list(log.records()) == [first, second, third]
    assert [r.seq for r in log.records(since_seq=1)] == [2, 3]
    assert log.verify().ok and log.verify().records == 3
    log.close()
    with AuditLog.open(tmp_path / "a" / "audit.db") as reopened:
        assert reopened.append("call_end", {}).seq == 4
        assert reopened.verify().ok


def test_open_sets_wal_and_full_sync_and_creates_private_key(tmp_path: Path) -> None:
    db_path = tmp_path / "nested" / "dir" / "audit.db"
    with AuditLog.open(db_path) as log:
        assert log._db.journal_mode == "wal"
        assert log._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    key_path = db_path.with_name("audit.db.key")
    assert len(key_path.read_bytes()) == 32
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_timestamps_are_utc_with_microseconds(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "audit.db") as log:
        at = datetime(2024, 5, 1, 16, 30, 0, 1234, tzinfo=timezone(timedelta(hours=8)))
        assert log.append("flag", {}, at=at).at == "2024-05-01T08:30:00.001234Z"
        assert log.append("flag", {}).at.endswith("Z")


@pytest.mark.parametrize(
    ("kind", "data", "at"),
    [
        ("flag", ["not", "a", "dict"], None),
        ("flag", {"when": datetime.now(UTC)}, None),
        ("flag", {"x": float("nan")}, None),
        ("", {}, None),
        ("flag", {}, datetime(2024, 1, 1)),
    ],
)
def test_append_rejects_bad_input(tmp_path: Path, kind: str, data: object, at: datetime | None) -> None:
    with AuditLog.open(tmp_path / "audit.db") as log:
        with pytest.raises(ValueError):
            log.append(kind, data, at=at)  # type: ignore[arg-type]
        assert log.verify().records == 0


@pytest.mark.parametrize(
    "sql",
    ["UPDATE audit SET data = '{}' WHERE seq = 2", "DELETE FROM audit WHERE seq = 2", "DELETE FROM audit_head"],
)
def test_triggers_refuse_update_and_delete(tmp_path: Path, sql: str) -> None:
    _filled_log(tmp_path, 3).close()
    conn = sqlite3.connect(tmp_path / "audit" / "audit.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(sql)
    conn.close()
    with AuditLog.open(tmp_path / "audit" / "audit.db") as log:
        assert log.verify().ok


@pytest.mark.parametrize(
    ("statements", "first_bad_seq", "problem"),
    [
        ([("UPDATE audit SET data = ? WHERE seq = 4", ('{"i":3,"rule":"none"}',))], 4, "record 4 was altered"),
        ([("UPDATE audit SET actor = 'bob' WHERE seq = 1", ())], 1, "record 1 was altered"),
        ([("DELETE FROM audit WHERE seq = 5", ())], 5, "record 5 is missing (deleted)"),
        (
            [
                ("UPDATE audit SET seq = -3 WHERE seq = 3", ()),
                ("UPDATE audit SET seq = 3 WHERE seq = 4", ()),
                ("UPDATE audit SET seq = 4 WHERE seq = -3", ()),
            ],
            3,
            "record 3 was altered",
        ),
        (
            [("DELETE FROM audit WHERE seq > 8", ())],
            9,
            "the log ends at record 8 but its head says 10 (records deleted from the end)",
        ),
        ([("DELETE FROM audit WHERE seq > 8", ()), ("DELETE FROM audit_head", ())], None, "head anchor is missing"),
        ([("UPDATE audit_head SET seq = 9, hash = (SELECT hash FROM audit WHERE seq = 9)", ())], None, "forged"),
    ],
    ids=[
        "data-altered",
        "actor-altered",
        "middle-deleted",
        "rows-reordered",
        "tail-truncated",
        "head-deleted",
        "head-forged",
    ],
)
def test_verify_reports_first_tampered_record(
    tmp_path: Path, statements: list[tuple[str, tuple[object, ...]]], first_bad_seq: int | None, problem: str
) -> None:
    _filled_log(tmp_path).close()
    _tamper(tmp_path / "audit" / "audit.db", *statements)
    with AuditLog.open(tmp_path / "audit" / "audit.db") as log:
        report = log.verify()
        assert report.records == len(list(log.records()))
    assert not report.ok
    assert report.first_bad_seq == first_bad_seq
    assert problem in (report.problem or "")


def test_swapped_contents_of_two_records_are_reported(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "audit.db") as log:
        for kind in ("call_start", "flag", "action", "operator_action", "call_end"):
            log.append(kind, {"kind": kind}, call_id="c1")
    conn = sqlite3.connect(tmp_path / "audit.db")
    (kind_3, data_3), (kind_4, data_4) = conn.execute("SELECT kind, data FROM audit WHERE seq IN (3, 4) ORDER BY seq")
    conn.close()
    swap = "UPDATE audit SET kind = ?, data = ? WHERE seq = ?"
    _tamper(tmp_path / "audit.db", (swap, (kind_4, data_4, 3)), (swap, (kind_3, data_3, 4)))
    with AuditLog.open(tmp_path / "audit.db") as log:
        assert [r.kind for r in log.records()] == ["call_start", "flag", "operator_action", "action", "call_end"]
        report = log.verify()
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 3, "record 3 was altered")


def test_attacker_recomputing_plain_sha256_chain_is_caught(tmp_path: Path) -> None:
    _filled_log(tmp_path).close()
    db_path = tmp_path / "audit" / "audit.db"
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT seq, at, kind, call_id, actor, data, prev_hash FROM audit ORDER BY seq").fetchall()
    statements, prev = [], rows[5][6]
    for seq, at, kind, call_id, actor, data, _ in rows[5:]:
        if seq == 6:
            data = json.dumps({"i": 5, "rule": "none", "text": "您好"}, sort_keys=True, separators=(",", ":"))
        fields = json.dumps(
            [seq, at, kind, call_id, actor, data], sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        digest = hashlib.sha256(f"{prev}\n{fields}".encode()).hexdigest()
        statements.append(
            ("UPDATE audit SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?", (data, prev, digest, seq))
        )
        prev = digest
    statements.append(("UPDATE audit_head SET hash = ?", (prev,)))
    conn.close()
    _tamper(db_path, *statements)
    with AuditLog.open(db_path) as log:
        report = log.verify()
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 6, "record 6 was altered")


def test_wrong_key_fails_verify_and_refuses_appends(tmp_path: Path) -> None:
    _filled_log(tmp_path, 3).close()
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(b"k" * 32)
    with AuditLog.open(tmp_path / "audit" / "audit.db", key_path=wrong_key) as log:
        report = log.verify()
        assert (report.ok, report.first_bad_seq, report.problem) == (False, 1, "record 1 was altered")
        with pytest.raises(AuditTamperedError, match="key is wrong"):
            log.append("flag", {})


def test_missing_or_empty_key_for_existing_log_is_a_clear_error(tmp_path: Path) -> None:
    _filled_log(tmp_path, 1).close()
    key_path = tmp_path / "audit" / "audit.db.key"
    key_path.write_bytes(b"")
    with pytest.raises(AuditKeyError, match="is empty"):
        AuditLog.open(tmp_path / "audit" / "audit.db")
    key_path.unlink()
    with pytest.raises(AuditKeyError, match="is missing but the log"):
        AuditLog.open(tmp_path / "audit" / "audit.db")
    assert not key_path.exists()


def test_export_csv_round_trips(tmp_path: Path) -> None:
    with _filled_log(tmp_path, 4) as log:
        log.append("operator_action", {"note": 'quote " and, comma\nnewline'}, actor="alice")
        out = io.StringIO()
        assert log.export(out, "csv") == 5
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert list(rows[0]) == ["seq", "at", "kind", "call_id", "actor", "data", "prev_hash", "hash"]
        for row, record in zip(rows, log.records(), strict=True):
            assert int(row["seq"]) == record.seq and row["hash"] == record.hash and row["prev_hash"] == record.prev_hash
            assert (row["at"], row["kind"], row["actor"] or None) == (record.at, record.kind, record.actor)
            assert json.loads(row["data"]) == record.data
        assert rows[4]["call_id"] == "" and json.loads(rows[4]["data"]) == {"note": 'quote " and, comma\nnewline'}


def test_export_jsonl_round_trips(tmp_path: Path) -> None:
    with _filled_log(tmp_path, 4) as log:
        out = io.StringIO()
        assert log.export(out, "jsonl") == 4
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [{**line, "data": json.loads(line["data"])} for line in lines] == [asdict(r) for r in log.records()]
        with pytest.raises(ValueError, match="unknown audit export format"):
            log.export(out, "xml")  # type: ignore[arg-type]


def test_concurrent_appends_from_threads_keep_one_chain(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "audit.db") as log:
        seqs: list[int] = []

        def worker(n: int) -> None:
            for i in range(25):
                seqs.append(log.append("flag", {"worker": n, "i": i}).seq)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seqs) == list(range(1, 101))
        assert log.verify() == VerifyReport(ok=True, records=100)


def test_appended_records_survive_kill_9(tmp_path: Path) -> None:
    db_path = tmp_path / "audit.db"
    printed: list[int] = []
    command = [sys.executable, "-c", KILL_SCRIPT, str(db_path)]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        try:
            while len(printed) < 50:
                line = child.stdout.readline()
                assert line, f"writer exited early with code {child.poll()}"
                printed.append(int(line))
        finally:
            child.send_signal(signal.SIGKILL)
        printed += [int(line) for line in child.stdout.read().split()]
    assert child.returncode == -signal.SIGKILL
    with AuditLog.open(db_path) as log:
        stored = {record.seq for record in log.records()}
        report = log.verify()
    assert set(printed) <= stored
    assert report.ok and report.records == len(stored) >= 50
