"""The stores' one database: the same SQL on the SQLite file and on PostgreSQL, and one schema on both."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from recordings import qa, screening
from recordings.store import RecordingStore
from voicebot.audit import AuditLog
from voicebot.audit_pg import PgAuditLog
from voicebot.campaigns.lifecycle import DebtBook
from voicebot.campaigns.pauses import Pauses
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.tasks import TaskBook
from voicebot.sql import SharedStoreError, open_db, pg_sql
from voicebot.web.auth import UserStore

PG_TYPES = {"text": "TEXT", "bigint": "INTEGER", "bytea": "BLOB", "double precision": "REAL"}
"""How a PostgreSQL column type reads as the SQLite type sqlite-utils gives the same column."""


def open_every_store(log: AuditLog, tmp_path: Path) -> None:
    """Open (so create or migrate) every store that lives beside the audit log."""
    with CampaignStore.open(log.path, key_path=tmp_path / "pii.key"), DebtBook.open(log.path, log), \
            TaskBook.open(log.path, log), Pauses.open(log.path, log), UserStore.open(log.path), \
            RecordingStore.open(log.path, tmp_path / "recordings", key_path=tmp_path / "rec.keys") as recordings:
        qa.create_tables(recordings)
        screening.create_tables(recordings)


def sqlite_columns(path: Path) -> dict[str, dict[str, str]]:
    with open_db(path) as db:
        tables = [r["name"] for r in db.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {c["name"]: c["type"] for c in db.rows(f'PRAGMA table_info("{t}")')} for t in tables}


def pg_columns(url: str) -> dict[str, dict[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = 'public' AND column_name != 'rowid'").fetchall()
    found: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        found.setdefault(table, {})[column] = PG_TYPES.get(kind, kind)
    return found


def test_postgresql_migrations_make_the_tables_sqlite_stores_make(tmp_path: Path, pg_url: str) -> None:
    with AuditLog.open(tmp_path / "voicebot.db") as log:
        open_every_store(log, tmp_path)
    with PgAuditLog.open(pg_url, tmp_path / "audit.key") as log:
        open_every_store(log, tmp_path)
    sqlite, pg = sqlite_columns(tmp_path / "voicebot.db"), pg_columns(pg_url)
    shared = {t for t in sqlite if not t.startswith(("sqlite_", "audit"))}
    assert shared <= pg.keys(), f"tables missing on PostgreSQL: {shared - pg.keys()}"
    for table in shared:
        assert pg[table] == sqlite[table], f"{table}: the same columns and types on both"


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_inserts_updates_upserts_and_transactions_behave_the_same(store: str, tmp_path: Path,
                                                                   request: pytest.FixtureRequest) -> None:
    target = tmp_path / "t.db" if store == "sqlite" else request.getfixturevalue("pg_url")
    with open_db(target) as db:
        db.create({"pauses": ({"scope": str, "name": str, "by": str, "at": str}, ("scope", "name"))})
        with db.write():
            db.insert("pauses", [{"scope": "pack", "name": "p1", "by": "lee", "at": "1"},
                                 {"scope": "pack", "name": "50% off?", "by": "o'neil", "at": "2"}])
            db.insert("pauses", {"scope": "pack", "name": "p1", "by": "x", "at": "9"}, ignore=True)
            db.upsert("pauses", {"scope": "pack", "name": "p1", "by": "kim", "at": "3"}, pk=("scope", "name"))
            assert db.update("pauses", {"scope": "pack", "name": "none"}, {"by": "z"}) == 0
        with pytest.raises(RuntimeError), db.write():
            db.execute("DELETE FROM pauses")
            raise RuntimeError("rolled back")
        rows = db.rows("SELECT name, \"by\" FROM pauses WHERE name LIKE '%?%' OR name = ? ORDER BY at", ["p1"])
        assert rows == [{"name": "50% off?", "by": "o'neil"}, {"name": "p1", "by": "kim"}]


def test_sqlite_placeholders_become_psycopgs_outside_quoted_text() -> None:
    assert pg_sql("SELECT '?', '50%' FROM t WHERE a = ? AND b LIKE 'x%' || ?") == \
        "SELECT '?', '50%%' FROM t WHERE a = %s AND b LIKE 'x%%' || %s"
    assert pg_sql("SELECT a % 2 FROM t WHERE s = 'it''s ?' AND c = ?") == \
        "SELECT a %% 2 FROM t WHERE s = 'it''s ?' AND c = %s"


@pytest.mark.parametrize("url", ["mysql://u:secret@h/db", "postgresql://u:secret@h:port/db",
                                 "postgresql://u:secret@127.0.0.1:1/db"])
def test_a_bad_or_unreachable_url_is_one_error_without_its_password(url: str) -> None:
    with pytest.raises(SharedStoreError) as raised:
        open_db(url)
    assert "secret" not in str(raised.value)
