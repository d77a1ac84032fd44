"""Shared fixtures: the real Vosk model and the shared audio beside the project."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from asr.vosk_engine import VoskEngine
from voicebot.config import Config, load_config


@pytest.fixture(scope="session")
def config() -> Config:
    """The project's configuration as the CLI would load it."""
    return load_config()


@pytest.fixture(scope="session")
def shared(config: Config) -> Path:
    """The shared/ folder beside the project (CI has it there)."""
    assert (config.shared_dir / "audio").is_dir(), f"shared audio missing at {config.shared_dir}"
    return config.shared_dir


@pytest.fixture(scope="session")
def engine(config: Config) -> VoskEngine:
    """The real Vosk Mandarin model, loaded once for the whole session."""
    return VoskEngine.load(config.vosk_model)


@pytest.fixture(scope="session")
def tts_texts(shared: Path) -> dict[str, str]:
    """Reference texts of the tts-cmn utterances, by file id."""
    with (shared / "audio" / "tts-cmn" / "transcripts.tsv").open(encoding="utf-8") as f:
        return {row["file"].removesuffix(".wav"): row["text"] for row in csv.DictReader(f, delimiter="\t")}


@pytest.fixture(scope="session")
def call_turns(shared: Path) -> list[dict[str, str]]:
    """Exact turn times of the stereo demo calls."""
    with (shared / "audio" / "tts-cmn" / "calls" / "turns.tsv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="session")
def us_pack():
    """The bundled US FDCPA / Regulation F pack."""
    from compliance_rules.pack import load_pack

    return load_pack("us-fdcpa-regf")


@pytest.fixture(scope="session")
def cn_rules():
    """The bundled Chinese collection pack, compiled once."""
    from compliance_rules.engine import RuleEngine

    return RuleEngine.from_pack("cn-collection")


@pytest.fixture
def engines(engine: VoskEngine, cn_rules, tmp_path: Path):
    """What live calls share, with the real model and rules, and a fresh audit log and recording folder."""
    from voicebot.audit import AuditLog
    from voicebot.call import Engines

    audit = AuditLog.open(tmp_path / "voicebot.db")
    engines = Engines(asr=engine, rules=cn_rules, audit=audit, recordings_dir=tmp_path / "recordings")
    yield engines
    engines.executor.shutdown(wait=True)
    audit.close()


@pytest.fixture(scope="session")
def threat_call(shared: Path) -> Path:
    """The stereo two-leg call in which the agent threatens the customer (gang-style, at about 19–22 s)."""
    return shared / "audio" / "tts-cmn" / "calls" / "call_agent_threat.wav"


@pytest.fixture
def midday_zone() -> str:
    """An IANA zone where it is now about 12:00, so a live call's clock never ends it for the hour."""
    from datetime import UTC, datetime

    offset = 12 - datetime.now(UTC).hour
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
