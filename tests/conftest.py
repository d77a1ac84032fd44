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
