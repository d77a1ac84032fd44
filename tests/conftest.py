"""Shared fixtures: the real Vosk model, the shared audio beside the project, real peers and Chromium."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import settings
from live_peers import CHROMIUM, CHROMIUM_ARGS, PASSWORD, Peers, running
from pg_server import PostgresServer, pg_bin
from playwright.async_api import Browser, async_playwright

from asr.vosk_engine import LIVE_DECODING, VoskEngine
from voicebot.audit import AuditLog
from voicebot.audit_pg import PgAuditLog
from voicebot.config import Config, ServeConfig, load_config
from voicebot.web.app import create_app
from voicebot.web.keys import AUTH

# Property tests assert behaviour, not speed: no per-example deadline (a loaded CI machine would trip it).
settings.register_profile("behaviour", deadline=None)
settings.load_profile("behaviour")


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
    return VoskEngine.load(config.vosk_model, LIVE_DECODING)


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
    from recordings.store import RecordingStore
    from voicebot.audit import AuditLog
    from voicebot.call import Engines

    audit = AuditLog.open(tmp_path / "voicebot.db")
    recordings = RecordingStore.open(audit.path, tmp_path / "recordings")
    engines = Engines(asr=engine, rules=cn_rules, audit=audit, recordings=recordings)
    yield engines
    engines.shutdown()
    recordings.close()
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


@pytest.fixture(scope="session")
def phone_audio(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Test utterances at 8 kHz: μ-law WAV for sipp (a11 threat, b02 lawful, a13b01 profanity then a lawful
    line), 16-bit PCM WAV for baresip's aufile (b01_pcm)."""
    out, tts = tmp_path_factory.mktemp("phone"), shared / "audio" / "tts-cmn"
    subprocess.run(["sox", str(tts / "a13.wav"), str(tts / "b01.wav"), str(out / "a13b01.wav")], check=True)
    ulaw, pcm = ["-e", "u-law", "-b", "8"], ["-e", "signed", "-b", "16"]
    files = {"a11": (tts / "a11.wav", ulaw), "b02": (tts / "b02.wav", ulaw), "a13b01": (out / "a13b01.wav", ulaw),
             "b01_pcm": (tts / "b01.wav", pcm)}
    for name, (src, encoding) in files.items():
        subprocess.run(["sox", str(src), "-r", "8000", *encoding, str(out / f"{name}.8k.wav")], check=True,
                       stderr=subprocess.DEVNULL)
    return {name: out / f"{name}.8k.wav" for name in files}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (Debian's postgresql package, installed by .ci/run)."""
    if pg_bin("initdb") is None:
        pytest.skip("needs the Debian package postgresql (installed by .ci/run)")
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    """An audit log in the embedded SQLite file or in a shared PostgreSQL database; a test's stores open at its
    `path` beside it, so the test runs against both stores."""
    if request.param == "sqlite":
        log = AuditLog.open(tmp_path / "voicebot.db")
    else:
        log = PgAuditLog.open(request.getfixturevalue("pg_url"), tmp_path / "audit.key")
    yield log
    log.close()


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    """Start real SIP peers; they are stopped after the test."""
    p = Peers(tmp_path)
    yield p
    await p.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium, driven by Playwright; closed after the test."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def console_server(engines, config) -> AsyncIterator[tuple[str, web.Application]]:
    """The real app on 127.0.0.1 at a free port, with a supervisor and a QA user."""
    app = create_app(config, ServeConfig(db=engines.audit.path, media_token="m" * 24), engines)
    async with running(app) as base:
        app[AUTH].store.add_user("sup", "supervisor", PASSWORD)
        app[AUTH].store.add_user("quinn", "qa", PASSWORD)
        yield base, app

