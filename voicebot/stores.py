"""What a node opens at its database, the SQLite file or the PostgreSQL store several nodes share: the audit log,
the recordings and the campaigns' PII key. A SQLite file's keys lie beside it; a shared store's lie in the data
folder, and every node holds the same copies."""

from __future__ import annotations

from pathlib import Path

from recordings.store import RecordingStore
from voicebot.audit import AuditLog
from voicebot.audit_pg import PgAuditLog
from voicebot.campaigns.store import CampaignStore
from voicebot.config import Config
from voicebot.sql import Target, is_url


def shared_key(config: Config, db: Target, name: str) -> Path | None:
    """A shared store's key file `name` in the data folder; None for a SQLite file (its keys lie beside it)."""
    return config.data_dir / name if is_url(db) else None


def open_audit_log(config: Config, db: Target, key: Path | None = None) -> AuditLog:
    """The node's own audit log in the SQLite file `db`, or the one several nodes share in the PostgreSQL database
    `db` names (keyed by `key`, by default <data folder>/audit.key)."""
    if not is_url(db):
        return AuditLog.open(Path(db))
    return PgAuditLog.open(str(db), key or shared_key(config, db, "audit.key"))


def open_recordings(config: Config, db: Target, folder: Path | None = None) -> RecordingStore:
    """The recordings whose metadata `db` holds, their files in `folder` (default: beside a SQLite file; for a
    shared store, <data folder>/recordings, which should be a folder every node reaches)."""
    if folder is None and is_url(db):
        folder = config.data_dir / "recordings"
    return RecordingStore.open(db, folder, key_path=shared_key(config, db, "recordings.keys"))


def pii_key(config: Config, db: Target) -> Path | None:
    """The campaigns' PII key file of `db` (None: beside the SQLite file)."""
    return shared_key(config, db, "pii.key")


def open_campaigns(config: Config, db: Target) -> CampaignStore:
    """The campaign store in `db`, its personal fields opened with the database's PII key."""
    return CampaignStore.open(db, key_path=pii_key(config, db))
