"""What every `voicebot` command shares: the command group, expected errors as one line, the database option,
loading the live engines and following a call's events."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from asr.codecs import AudioFormatError
from asr.vosk_engine import ModelMissingError
from compliance_rules.pack import RulePackError
from compliance_rules.semantic import SemanticModelError
from compliance_rules.training import LabelledDataError as ExamplesError
from recordings.keys import RecordingKeyError
from recordings.qa import QaError
from recordings.sealed import RecordingTamperedError
from recordings.store import RecordingNotFound, RecordingStore
from voicebot.adapters.sip import SipCallError, SipConfigError
from voicebot.audit import AuditKeyError, AuditLog
from voicebot.bot import BotSetupError
from voicebot.call import Engines, load_hearing
from voicebot.campaigns import (
    CampaignError,
    CampaignFileError,
    DialPlanError,
    PiiKeyError,
)
from voicebot.config import Config, ConfigError, load_config
from voicebot.models import ModelFetchError
from voicebot.nlu.classify import IntentModelMissingError
from voicebot.nlu.data import LabelledDataError
from voicebot.nlu.train import TokenizerMissingError
from voicebot.sql import SharedStoreError, Target, is_url
from voicebot.stores import open_audit_log, open_recordings
from voicebot.tts import SynthesisError, TtsEngineMissingError
from voicebot.web.auth import AuthError

EXPECTED_ERRORS = (AudioFormatError, ModelMissingError, ModelFetchError, ConfigError, RulePackError, AuditKeyError,
                   AuthError, SipCallError, SipConfigError, CampaignFileError, CampaignError, PiiKeyError,
                   DialPlanError, IntentModelMissingError, LabelledDataError, TokenizerMissingError, QaError,
                   RecordingKeyError, RecordingTamperedError, RecordingNotFound, SemanticModelError,
                   ExamplesError, BotSetupError, TtsEngineMissingError, SynthesisError, SharedStoreError)


def cli_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's expected errors into a message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED_ERRORS as e:
            raise click.ClickException(str(e)) from e

    return wrapper


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.pass_context
@cli_errors
def main(ctx: click.Context, verbose: bool) -> None:
    """Offline voice-bot and call-compliance monitor for debt-collection calls."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = load_config()


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The `--db PATH|URL` option every state-writing command takes (default: the data folder's voicebot.db)."""
    return click.option("--db", "db_path", envvar="VOICEBOT_DB", callback=_db_target, metavar="PATH|URL",
                        help="SQLite file (default: <data folder>/voicebot.db), or postgresql://… of the store several "
                             "nodes share (or set VOICEBOT_DB, which keeps a password off the command line).")(fn)


def _db_target(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | str | None:
    if value is None or is_url(value):
        return value
    return Path(value)


def open_audit(config: Config, db_path: Path | str | None) -> AuditLog:
    """The audit log in `db_path` (a SQLite file or a shared store), or in the data folder's voicebot.db."""
    return open_audit_log(config, db_path or config.data_dir / "voicebot.db")



def print_event(event: dict[str, Any]) -> None:
    """Print an event as one JSON line."""
    click.echo(json.dumps(event, ensure_ascii=False))


def parse_start(text: str | None, zones: tuple[str, ...]) -> datetime:
    """The call's start: ISO-8601, read in the debtor's first zone when it has no offset; default now."""
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 time", param_hint="--start") from e
    if at.tzinfo is None:
        if not zones:
            raise click.BadParameter(f"{text!r} has no UTC offset; add one or give --tz", param_hint="--start")
        at = at.replace(tzinfo=zone_info(zones[0]))
    return at


def zone_info(name: str) -> ZoneInfo:
    """An IANA zone, or a usage error naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise click.BadParameter(f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai",
                                 param_hint="--tz") from e


def load_engines(config: Config, pack_name: str, db_path: Target | None, model: Path | None = None) -> Engines:
    """Load what live calls share: the recognizer for the pack's language, the rule pack, the audit log."""
    hearing = load_hearing(config, pack_name, model=model)
    audit = open_audit(config, db_path)
    recordings = open_recordings(config, audit.path)
    return Engines(asr=hearing.asr, rules=hearing.rules, meaning=hearing.meaning, audit=audit, recordings=recordings)


def open_log_and_recordings(config: Config, db_path: Path | str | None) -> tuple[AuditLog, RecordingStore]:
    """The audit log and the recording store of one database."""
    audit = open_audit(config, db_path)
    try:
        return audit, open_recordings(config, audit.path)
    except BaseException:
        audit.close()
        raise


