"""The `voicebot` command: set-up, transcription and the demo."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
import signal
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from aiohttp import web

from asr.codecs import ENCODINGS, STREAM_RATES, Audio, AudioFormatError, read_audio_file, read_raw_file
from asr.diarize import Diarizer
from asr.transcribe import LegTranscript, transcribe_audio
from asr.vosk_engine import LIVE_DECODING, ModelMissingError, VoskEngine
from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import CallMonitor, CallState, Flag, RuleEngine
from compliance_rules.held_out import held_out_texts, retire
from compliance_rules.pack import RulePackError, load_pack
from compliance_rules.semantic import MODEL_DIR, SemanticModelError
from compliance_rules.timing import Agreement, Attempt, pre_dial_check
from compliance_rules.training import REPLIES_DIR, TRAIN_DIR, train
from compliance_rules.training import LabelledDataError as ExamplesError
from recordings.importer import diarized_split, import_recording
from recordings.keys import RecordingKeyError
from recordings.qa import DEFAULT_RATE, QaError, check_month, coverage, draw_sample
from recordings.sealed import RecordingTamperedError
from recordings.store import RecordingNotFound, RecordingStore
from scripts_library import ScriptError, bundled_scripts, load_script
from voicebot.adapters.replay import SimulatedDebtor, load_call_audio, replay_call, simulate_bot_call
from voicebot.adapters.sip import SipCallError, SipConfigError, SipSettings
from voicebot.audit import AuditKeyError, AuditLog
from voicebot.bot import BotSetupError
from voicebot.call import CallBoard, CallInfo, Engines
from voicebot.campaigns import (
    CampaignError,
    CampaignFileError,
    CampaignStore,
    DialPlan,
    DialPlanError,
    PiiKeyError,
    RetryPolicy,
    campaign_report,
    format_report,
    read_campaign_file,
    run_sip_campaign,
)
from voicebot.config import Config, ConfigError, ServeConfig, load_config, media_token
from voicebot.models import ModelFetchError, fetch_diarization_models, fetch_vosk_model, vosk_model_sources
from voicebot.nlu.classify import IntentClassifier, IntentModelMissingError, understanding_json
from voicebot.nlu.data import DATA_FILE, LabelledDataError
from voicebot.nlu.train import TokenizerMissingError, model_is_current, report_json, train_intent_model
from voicebot.tts import SynthesisError, TtsEngineMissingError
from voicebot.web.app import create_app
from voicebot.web.auth import ROLES, AuthError, UserStore, check_password_text

RAW_SUFFIXES = {".ul": "ulaw", ".ulaw": "ulaw", ".mulaw": "ulaw", ".al": "alaw", ".alaw": "alaw",
                ".pcm": "pcm16", ".raw": "pcm16", ".s16": "pcm16"}
EXPECTED_ERRORS = (AudioFormatError, ModelMissingError, ModelFetchError, ConfigError, RulePackError, AuditKeyError,
                   AuthError, SipCallError, SipConfigError, CampaignFileError, CampaignError, PiiKeyError,
                   DialPlanError, IntentModelMissingError, LabelledDataError, TokenizerMissingError, QaError,
                   RecordingKeyError, RecordingTamperedError, RecordingNotFound, SemanticModelError,
                   ExamplesError, BotSetupError, TtsEngineMissingError, SynthesisError)
CONTEXTS = ("verified", "unverified", "disputed", "third_party")
LEG_PREFIX = re.compile(r"^(agent|customer)\s*[:：]\s*")
MAX_UTTERANCE_CHARS = 2000
BLIND_DIR = Path(__file__).resolve().parent.parent / "bench" / "data" / "blind"
CALIBRATION_SETS = tuple(BLIND_DIR / f"blind{n}_{lang}.tsv" for n in (4, 5, 7) for lang in ("zh", "en"))
MODEL_PACKS = ("cn-collection", "us-fdcpa-regf")
"""The packs whose rules the model's veto is calibrated against, one per language."""


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
    """The `--db PATH` option every state-writing command takes (default: the data folder's voicebot.db)."""
    return click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="SQLite database (default: <data folder>/voicebot.db).")(fn)


def open_audit(config: Config, db_path: Path | None) -> AuditLog:
    """The audit log in `db_path`, or in the data folder's voicebot.db."""
    return AuditLog.open(db_path or config.data_dir / "voicebot.db")


@main.group()
def models() -> None:
    """Install and locate the offline models."""


@models.command("fetch")
@click.pass_obj
@cli_errors
def models_fetch(config: Config) -> None:
    """Install the Vosk Mandarin model and the diarization models into the models folder (checked by sha256)."""
    sources = vosk_model_sources(config.vosk_model_source, config.shared_dir)
    path = fetch_vosk_model(config.models_dir, sources)
    click.echo(f"Vosk model ready: {path}")
    for folder in fetch_diarization_models(config.models_dir, config.shared_dir):
        click.echo(f"Diarization model ready: {folder}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (and leg) with word times.")
@click.option("--no-vad", is_flag=True, help="Recognise silence too instead of gating it away.")
@click.option("--encoding", type=click.Choice(ENCODINGS), help="Headerless input encoding (default by suffix).")
@click.option("--rate", type=click.Choice([str(r) for r in STREAM_RATES]), default="8000",
              help="Sample rate of headerless input.")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder.")
@click.pass_obj
@cli_errors
def transcribe(config: Config, files: tuple[Path, ...], as_json: bool, no_vad: bool,
               encoding: str | None, rate: str, model: Path | None) -> None:
    """Transcribe audio files (WAV/FLAC of any rate, stereo = agent|customer, or raw G.711/PCM16)."""
    engine = VoskEngine.load(model or config.vosk_model)
    failed = 0
    for path in files:
        try:
            audio = read_input(path, encoding, int(rate))
        except (AudioFormatError, OSError) as e:
            click.echo(f"error: {e}", err=True)
            failed += 1
            continue
        for leg in transcribe_audio(engine, audio, vad=not no_vad):
            click.echo(json.dumps(leg_json(path, leg), ensure_ascii=False) if as_json else _leg_line(path, leg))
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} file(s) could not be read")


@main.command()
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder.")
@click.option("--speed", type=click.FloatRange(min=0.5, max=100), default=3.0, show_default=True,
              help="Replay speed relative to real time.")
@db_option
@click.pass_obj
@cli_errors
def demo(config: Config, model: Path | None, speed: float, db_path: Path | None) -> None:
    """The bot reminds a simulated debtor and records a promise to pay; then an agent's threat is cut off live."""
    tts = config.shared_dir / "audio" / "tts-cmn"
    threat_call = tts / "calls" / "call_agent_threat.wav"
    needed = [threat_call, tts / "c01.wav", tts / "c05.wav"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise click.ClickException(f"demo audio not found: {', '.join(missing)}; "
                                   "set VOICEBOT_SHARED_DIR to the shared/ folder")
    engines = load_engines(config, "cn-collection", db_path or config.data_dir / "demo.db", model)
    office_hours = datetime.now(ZoneInfo("Asia/Shanghai")).replace(hour=10, minute=0, second=0, microsecond=0)
    click.echo(f"== the bot calls a simulated debtor (replies from {tts.name}/c01.wav, keys 1234, c05.wav), "
               f"{speed:g}x")
    debtor = SimulatedDebtor({"ask_name": read_audio_file(tts / "c01.wav"), "ask_id_digits": "1234",
                              "ask_payment": read_audio_file(tts / "c05.wav")}, speed=speed)
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=office_hours, speed=speed,
                    agent_id="bot-01")
    asyncio.run(_follow_bot(config, engines, info, debtor))
    audio = load_call_audio([threat_call])
    click.echo(f"== a supervised agent call: {threat_call.name}, {audio.duration_s:.1f} s, 2 legs, {speed:g}x")
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=office_hours, speed=speed)
    asyncio.run(_follow(audio, engines, info, _show_event))
    _screen_and_sample(engines, model or config.vosk_model, office_hours)
    report = engines.audit.verify()
    click.echo(f"== audit log {engines.audit.path}: {report.records} records, "
               f"hash chain {'intact' if report.ok else 'BROKEN: ' + str(report.problem)}")


def _screen_and_sample(engines: Engines, vosk_model: Path, at: datetime) -> None:
    """QA's side of the demo: screen the new recordings, then draw the month's review sample."""
    from recordings.batch_screening import ScreenModels, screen_pending

    click.echo("== screening the new recordings (transcript per leg, rule pack, scorecard)")
    report = screen_pending(engines.recordings, ScreenModels(vosk_model=vosk_model), workers=1)
    for outcome in report.outcomes:
        if outcome.screening is None:
            click.echo(f"{'':17}{outcome.recording_id}: failed ({outcome.error})")
            continue
        failed = [k for k, item in outcome.screening.scorecard.items() if item.mark == "fail"]
        click.echo(f"{'':17}{outcome.recording_id}: score {outcome.screening.score:g}, "
                   f"{len(outcome.screening.flags)} flag(s), failed: {', '.join(failed) or 'nothing'}")
    month = f"{at.astimezone(UTC):%Y-%m}"
    sample = draw_sample(engines.recordings, engines.audit, month=month, actor="demo")
    click.echo(f"== QA sample for {month} (seed {sample.seed}): " + ", ".join(
        f"{i.recording_id} ({i.agent_id}, {i.reason})" for i in sample.items))


async def _follow_bot(config: Config, engines: Engines, info: CallInfo, debtor: SimulatedDebtor) -> None:
    board = CallBoard()
    events = board.listen(maxsize=0)
    params = {"name": "李娜", "id_last4": "1234", "amount": "3200", "due_date": "2026-11-03", "lender": "示例银行",
              "days_overdue": "20"}
    await follow_events(events, asyncio.create_task(simulate_bot_call(config, engines, board, info, params, debtor)),
                        _show_event)


def _show_event(event: dict[str, Any]) -> None:
    kind = event["type"]
    if kind == "outcome":
        promise = f"{event['promise_amount'] or '-'} by {event['promise_date'] or '-'}"
        click.echo(f"{'':17}OUTCOME {event['kind']}: {promise}")
    elif kind == "final":
        click.echo(f"[{event['start_s'] or 0:6.2f}–{event['end_s'] or 0:6.2f}] {event['leg']:<8} {event['text']}")
    elif kind == "flag":
        label = "signal" if event["signal"] else f"FLAG {event['severity']}"
        where = f"score {event['score']:.2f}" if event.get("source") == "model" else f"on {event['matched']!r}"
        click.echo(f"{'':17}{label}: {event['category']} ({event['rule']}) {where}")
    elif kind == "action":
        delay = f", {event['delay_ms']:.0f} ms after the words" if "delay_ms" in event else ""
        click.echo(f"{'':17}ACTION {event['action']} by {event['actor']}{delay}")
    elif kind == "call_end":
        click.echo(f"== ended ({event['reason']}) after {event['duration_s']} s; recordings: "
                   f"{', '.join(event['recordings'])}")


def read_input(path: Path, encoding: str | None, sample_rate: int) -> Audio:
    """Read a file as audio: headerless if an encoding is given or its suffix says so."""
    encoding = encoding or RAW_SUFFIXES.get(path.suffix.lower())
    if encoding:
        return read_raw_file(path, encoding, sample_rate)  # type: ignore[arg-type]
    return read_audio_file(path)


def leg_json(path: Path, leg: LegTranscript) -> dict[str, Any]:
    """The --json record of one file (or one leg of a stereo file)."""
    record: dict[str, Any] = {"file": str(path)}
    if leg.leg:
        record["leg"] = leg.leg
    record.update(
        text=leg.text,
        words=[{"word": w.word, "start": w.start_s, "end": w.end_s} for w in leg.words],
        duration=round(leg.duration_s, 3),
    )
    return record


def _leg_line(path: Path, leg: LegTranscript) -> str:
    return f"{path}{f' [{leg.leg}]' if leg.leg else ''}: {leg.text}"


@main.group()
def rules() -> None:
    """Lint rule packs and check utterances against them."""


@rules.command("lint")
@click.argument("packs", nargs=-1, required=True)
@cli_errors
def rules_lint(packs: tuple[str, ...]) -> None:
    """Validate rule packs (bundled names or YAML files); errors name the file, line and field."""
    for name in packs:
        pack = load_pack(name)
        RuleEngine(pack)
        click.echo(f"{pack.path}: ok ({len(pack.rules)} rules, pack {pack.name})")


@rules.command("check")
@click.option("--pack", "pack_name", default="cn-collection", show_default=True, help="Bundled pack or YAML file.")
@click.option("--leg", type=click.Choice(["agent", "customer"]), default="agent", show_default=True)
@click.option("--context", type=click.Choice(CONTEXTS), default="verified", show_default=True,
              help="What the call has established before these utterances.")
@click.option("--call", "as_call", is_flag=True,
              help="Lines are one call in order (prefix 'agent:' or 'customer:'); customer signals change state.")
@click.option("--rules-only", is_flag=True, help="Leave the semantic model out.")
@click.option("--jsonl", is_flag=True, help="One JSON object per line (the default; kept for scripts).")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@cli_errors
def rules_check(pack_name: str, leg: str, context: str, as_call: bool, rules_only: bool, jsonl: bool,
                source: TextIO) -> None:
    """Read utterances, one per line, from SOURCE (default stdin); print {"text", "flags"} per line, in order.

    Flags come from the pack's rules and the semantic model, each with its `source` and `score`."""
    engine = RuleEngine.from_pack(pack_name)
    state = CallState.of(context)
    model = None if rules_only else SemanticDetector.for_pack(engine.pack)
    monitor = CallMonitor(engine, state=state, model=model)
    for line in source:
        text = line.rstrip("\r\n")[:MAX_UTTERANCE_CHARS]
        line_leg, prefix = leg, LEG_PREFIX.match(text)
        if prefix:
            line_leg, text = prefix.group(1), text[prefix.end():]
        if not as_call:
            monitor = CallMonitor(engine, state=dataclasses.replace(state), model=model)
        flags = monitor.check_all(line_leg, text)
        click.echo(json.dumps({"text": text, "flags": [flag_json(f) for f in flags]}, ensure_ascii=False))


@rules.command("train-model")
@click.option("--calibrate", "calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, default=CALIBRATION_SETS, show_default=True,
              help="Blind sets (never trained on) that the action and alert thresholds are calibrated on.")
@click.pass_obj
@cli_errors
def rules_train_model(config: Config, calibration: tuple[Path, ...]) -> None:
    """Train the semantic detector on compliance_rules/data/*.tsv (and its reply head on data/replies/*.tsv) and
    install it in compliance_rules/models/."""
    rules = {engine.pack.language: engine for engine in map(RuleEngine.from_pack, MODEL_PACKS)}
    held_out = held_out_texts([*calibration, *blind_sets()])
    report = train(sorted(TRAIN_DIR.glob("*.tsv")), list(calibration), MODEL_DIR, rules, held_out=held_out,
                   reply_paths=sorted(REPLIES_DIR.glob("*.tsv")), cache_dir=config.data_dir / "vectors")
    click.echo(json.dumps(report, ensure_ascii=False))


@rules.command("retire")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@cli_errors
def rules_retire(paths: tuple[Path, ...]) -> None:
    """Copy studied blind sets (TSV, or whole-call JSONL) into the training data as retired_<name>.tsv; remove
    their frozen copies from bench/data/blind yourself, then retrain."""
    for path in paths:
        for written in retire(path):
            click.echo(f"wrote {written}")


def blind_sets() -> list[Path]:
    """Every frozen blind set in bench/data/blind: its texts are never trained on."""
    return sorted(p for p in BLIND_DIR.iterdir() if p.suffix in (".tsv", ".jsonl"))


def flag_json(flag: Flag) -> dict[str, Any]:
    """The JSON form of a flag that `rules check` prints."""
    return {"rule": flag.rule, "category": flag.category, "severity": flag.severity, "action": flag.action,
            "span": list(flag.span), "source": flag.source, "score": flag.score, "model": flag.model}


@rules.command("gate")
@click.option("--pack", "pack_name", default="cn-collection", show_default=True)
@click.option("--zone", "zones", multiple=True, help="IANA zone of the debtor (repeat when sources conflict).")
@click.option("--at", "at_text", help="Dial time, ISO-8601 with offset (default: now).")
@click.option("--attempts", type=click.File("r"),
              help="JSONL of past attempts for this debt: {\"at\": ISO-TIME, \"conversation\": bool}.")
@click.option("--agreed", nargs=3, metavar="START END EVIDENCE",
              help="The debtor agreed to a call between START and END; EVIDENCE says where that is recorded.")
@cli_errors
def rules_gate(pack_name: str, zones: tuple[str, ...], at_text: str | None, attempts: TextIO | None,
               agreed: tuple[str, str, str] | None) -> None:
    """Pre-dial gate: may this debt be called now? Exit 0 if allowed, 3 if refused."""
    at = parse_time(at_text) if at_text else datetime.now(UTC)
    history = [Attempt(at=parse_time(r["at"]), conversation=bool(r.get("conversation")))
               for r in map(json.loads, filter(str.strip, attempts or []))]
    agreement = Agreement(parse_time(agreed[0]), parse_time(agreed[1]), agreed[2]) if agreed else None
    decision = pre_dial_check(load_pack(pack_name), at, list(zones), history, agreement)
    click.echo(json.dumps({"allowed": decision.allowed, "reasons": list(decision.reasons),
                           "zones": list(decision.zones), "evidence": decision.evidence,
                           "next_allowed": decision.next_allowed.isoformat() if decision.next_allowed else None},
                          ensure_ascii=False))
    if not decision.allowed:
        sys.exit(3)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time that must carry its UTC offset."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 time") from e
    if at.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no UTC offset; add one, e.g. +08:00")
    return at


@main.group()
def scripts() -> None:
    """Lint the reminder bot's dialog scripts."""


@scripts.command("lint")
@click.argument("names", nargs=-1)
def scripts_lint(names: tuple[str, ...]) -> None:
    """Load scripts (bundled names or YAML files; default: all bundled) and check every line with its rule pack."""
    failed = 0
    for name in names or bundled_scripts():
        try:
            script = load_script(name)
        except (ScriptError, RulePackError) as e:
            click.echo(f"error: {e}", err=True)
            failed += 1
            continue
        low, high = script.days
        click.echo(f"{script.path}: ok ({len(script.lines)} lines, {script.language}, pack {script.pack}, "
                   f"{low}–{high if high is not None else '∞'} days overdue)")
    if failed:
        raise click.ClickException(f"{failed} script(s) failed")


@main.group()
def audit() -> None:
    """Verify and export the tamper-evident audit log."""


@audit.command("verify")
@db_option
@click.pass_obj
@cli_errors
def audit_verify(config: Config, db_path: Path | None) -> None:
    """Check the hash chain; report the first altered, deleted or reordered record (exit 4)."""
    with open_audit(config, db_path) as log:
        report = log.verify()
    if report.ok:
        click.echo(f"ok: {report.records} records, chain intact")
        return
    click.echo(f"TAMPERED: {report.problem}", err=True)
    sys.exit(4)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
@db_option
@click.pass_obj
@cli_errors
def audit_export(config: Config, fmt: str, output: TextIO, db_path: Path | None) -> None:
    """Write every audit record as JSONL or CSV."""
    with open_audit(config, db_path) as log:
        count = log.export(output, fmt)  # type: ignore[arg-type]
    click.echo(f"{count} records exported", err=True)


@main.group()
def users() -> None:
    """Manage the supervisor console's users (kept in the audit log's database)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="supervisor: watch and act; qa: watch only; admin: also manage users.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line instead of a prompt.")
@db_option
@click.pass_obj
@cli_errors
def users_add(config: Config, name: str, role: str, password_stdin: bool, db_path: Path | None) -> None:
    """Add a console user; the password is asked for (hidden) or read from stdin, and stored as an scrypt hash."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_password_text(password)
    with open_audit(config, db_path) as log, UserStore.open(log.path) as store:
        user = store.add_user(name, role, password)
        log.append("user", {"event": "add", "username": user.username, "role": user.role}, actor="cli")
    click.echo(f"added {user.username} ({user.role})")


@users.command("list")
@db_option
@click.pass_obj
@cli_errors
def users_list(config: Config, db_path: Path | None) -> None:
    """List console users: name, role, status, created (UTC)."""
    with UserStore.open(db_path or config.data_dir / "voicebot.db") as store:
        for u in store.users():
            created = datetime.fromtimestamp(u.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            click.echo(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}\t{created}")


@users.command("disable")
@click.argument("name")
@db_option
@click.pass_obj
@cli_errors
def users_disable(config: Config, name: str, db_path: Path | None) -> None:
    """Disable a user and end their console sessions at once."""
    _set_disabled(config, name, db_path, disabled=True)


@users.command("enable")
@click.argument("name")
@db_option
@click.pass_obj
@cli_errors
def users_enable(config: Config, name: str, db_path: Path | None) -> None:
    """Re-enable a disabled user."""
    _set_disabled(config, name, db_path, disabled=False)


def _set_disabled(config: Config, name: str, db_path: Path | None, *, disabled: bool) -> None:
    event = "disable" if disabled else "enable"
    with open_audit(config, db_path) as log, UserStore.open(log.path) as store:
        user = store.set_disabled(name, disabled)
        log.append("user", {"event": event, "username": user.username}, actor="cli")
    click.echo(f"{event}d {user.username}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pack", "pack_name", default="cn-collection", show_default=True, help="Bundled pack or YAML file.")
@click.option("--start", "start_text", help="Wall time the call starts, ISO-8601 (default: now).")
@click.option("--tz", "zones", multiple=True, help="IANA zone of the debtor (repeat when sources conflict).")
@click.option("--speed", type=click.FloatRange(min=0.1, max=1000), default=1.0, show_default=True,
              help="Replay speed relative to real time.")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder.")
@db_option
@click.pass_obj
@cli_errors
def monitor(config: Config, files: tuple[Path, ...], pack_name: str, start_text: str | None, zones: tuple[str, ...],
            speed: float, model: Path | None, db_path: Path | None) -> None:
    """Replay a stereo call (or agent and customer files) through the live path; print one JSON line per event."""
    audio = load_call_audio(list(files))
    start = parse_start(start_text, zones)
    engines = load_engines(config, pack_name, db_path, model)
    info = CallInfo(adapter="replay", zones=zones, started_at=start, speed=speed)
    asyncio.run(_follow(audio, engines, info, print_event))


async def _follow(audio: Audio, engines: Engines, info: CallInfo, show: Callable[[dict[str, Any]], None]) -> None:
    """Replay a call and show each of its events as it happens."""
    board = CallBoard()
    events = board.listen(maxsize=0)
    await follow_events(events, asyncio.create_task(replay_call(audio, engines, board, info)), show)


CALL_TASK_DONE: dict[str, Any] = {"type": "call_task_done"}


async def follow_events(events: asyncio.Queue[dict[str, Any]], task: asyncio.Task[Any],
                        show: Callable[[dict[str, Any]], None]) -> None:
    """Show a board's events until the task running the call is done, then raise its error if it failed."""
    task.add_done_callback(lambda _: events.put_nowait(CALL_TASK_DONE))
    while (event := await events.get()) is not CALL_TASK_DONE:
        show(event)
    await task


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


def load_engines(config: Config, pack_name: str, db_path: Path | None, model: Path | None = None) -> Engines:
    """Load what live calls share: the recognizer, the rule pack, the audit log."""
    rules = RuleEngine.from_pack(pack_name)
    asr = VoskEngine.load(model or config.vosk_model, LIVE_DECODING)
    audit = open_audit(config, db_path)
    recordings = RecordingStore.open(audit.path)
    return Engines(asr=asr, rules=rules, audit=audit, recordings=recordings,
                   meaning=SemanticDetector.for_pack(rules.pack))


def open_recordings(config: Config, db_path: Path | None) -> tuple[AuditLog, RecordingStore]:
    """The audit log and the recording store of one database."""
    audit = open_audit(config, db_path)
    try:
        return audit, RecordingStore.open(audit.path)
    except BaseException:
        audit.close()
        raise


@main.group()
def recordings() -> None:
    """The sealed call recordings: list, import, screen, rotate the key, purge after retention."""


@recordings.command("list")
@click.option("--month", help="YYYY-MM (UTC).")
@click.option("--agent", "agent_id", help="One agent.")
@db_option
@click.pass_obj
@cli_errors
def recordings_list(config: Config, month: str | None, agent_id: str | None, db_path: Path | None) -> None:
    """One JSON line per recording: id, agent, times, status, outcome, flag categories."""
    audit, store = open_recordings(config, db_path)
    with audit, store:
        for r in store.recordings(month=month and check_month(month), agent_id=agent_id):
            click.echo(json.dumps({"recording_id": r.recording_id, "agent_id": r.agent_id, "source": r.source,
                                   "started_at": r.started_at.isoformat(), "duration_s": r.duration_s,
                                   "status": r.status, "outcome": r.outcome, "key_id": r.key_id,
                                   "flags": [f["category"] for f in r.flags]}, ensure_ascii=False))


@recordings.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agent", "agent_id", help="The agent on these calls (QA samples per agent).")
@click.option("--account", "account_id", help="The account the calls are about.")
@click.option("--started", "started_text", help="When the call started, ISO 8601 with offset (default: file time).")
@click.option("--swap", is_flag=True, help="Stereo files carry the customer on the left channel.")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder (mono files).")
@db_option
@click.pass_obj
@cli_errors
def recordings_import(config: Config, files: tuple[Path, ...], agent_id: str | None, account_id: str | None,
                      started_text: str | None, swap: bool, model: Path | None, db_path: Path | None) -> None:
    """Seal external recordings (WAV, MP3, FLAC) into the store; mono ones are split into agent and customer by
    speaker diarization. A file that cannot be read is reported and the others are still imported (exit 1)."""
    started = parse_start(started_text, ()) if started_text else None
    split = None
    failed = 0
    audit, store = open_recordings(config, db_path)
    with audit, store:
        for path in files:
            try:
                if split is None and len(read_audio_file(path).channels) == 1:
                    asr = VoskEngine.load(model or config.vosk_model)
                    split = diarized_split(Diarizer.load(config.models_dir), asr)
                done = import_recording(store, path, agent_id=agent_id, account_id=account_id, started_at=started,
                                        swap=swap, split_mono=split)
            except (AudioFormatError, ValueError) as e:
                click.echo(f"{path}: {e}", err=True)
                failed += 1
                continue
            audit.append("recording_imported", {"recording_id": done.recording_id, "file": path.name,
                                                "duration_s": round(done.duration_s, 2), "diarized": done.diarized,
                                                "agent_id": agent_id}, call_id=done.recording_id, actor="import")
            click.echo(json.dumps({"file": str(path), "recording_id": done.recording_id,
                                   "duration_s": round(done.duration_s, 2), "diarized": done.diarized}))
    if failed:
        raise SystemExit(1)


@recordings.command("rotate-key")
@click.option("--actor", default="admin", show_default=True, help="Who rotates, for the audit log.")
@db_option
@click.pass_obj
@cli_errors
def recordings_rotate_key(config: Config, actor: str, db_path: Path | None) -> None:
    """Add a new recording key, seal new recordings with it and rewrap the finished ones (old keys are kept)."""
    audit, store = open_recordings(config, db_path)
    with audit, store:
        key_id, rewrapped = store.rotate_key(audit, actor=actor)
    click.echo(f"new key {key_id}; {rewrapped} recording(s) rewrapped; keep {store.ring.path} backed up")


@recordings.command("purge")
@click.option("--actor", default="retention", show_default=True, help="Who purges, for the audit log.")
@db_option
@click.pass_obj
@cli_errors
def recordings_purge(config: Config, actor: str, db_path: Path | None) -> None:
    """Delete recordings past their retention (at least three years); each deletion is audited."""
    audit, store = open_recordings(config, db_path)
    with audit, store:
        purged = store.purge(audit, now=datetime.now(UTC), actor=actor)
    click.echo(f"{len(purged)} recording(s) purged")


@recordings.command("screen")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes or Ray actors (default: one per CPU).")
@click.option("--ray", "ray_address", help="Screen on the Ray cluster at this address (auto, ray://HOST:10001); "
                                           "its nodes must see the database, recordings and key file at these paths.")
@click.option("--limit", type=click.IntRange(min=1), help="Screen at most this many recordings in this run.")
@click.option("--pack", "pack_name", default="cn-collection", show_default=True, help="Bundled pack or YAML file.")
@db_option
@click.pass_obj
@cli_errors
def recordings_screen(config: Config, workers: int | None, ray_address: str | None, limit: int | None,
                      pack_name: str, db_path: Path | None) -> None:
    """Screen every recording not screened yet: transcribe both legs, run the rule pack, fill the scorecard.

    Prints one JSON line per recording (id, score, flag count; never the transcript), then a summary line. Resumable
    and never screens a call twice: each recording is claimed first, a run that stopped is picked up after an hour,
    and a failed recording is retried by later runs (3 tries). Run it periodically (cron, a systemd timer) so that
    new calls are screened.
    """
    from recordings.batch_screening import ScreenModels, screen_pending
    from recordings.screening import ScreeningError

    audit, store = open_recordings(config, db_path)
    with audit, store:
        try:
            report = screen_pending(store, ScreenModels(vosk_model=config.vosk_model, pack=pack_name),
                                    workers=workers, ray_address=ray_address, limit=limit,
                                    progress=lambda outcome: click.echo(json.dumps(outcome.summary())))
        except ScreeningError as e:
            raise click.ClickException(str(e)) from e
    click.echo(json.dumps({"summary": report.summary()}))


@main.group()
def qa() -> None:
    """QA: the monthly review sample per agent, and coverage reports."""


@qa.command("sample")
@click.option("--month", required=True, help="YYYY-MM (UTC).")
@click.option("--rate", default=DEFAULT_RATE, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Share of each agent's recordings to draw (at least one per agent).")
@click.option("--seed", type=int, help="Redraw a recorded sample exactly (default: a fresh seed, recorded).")
@click.option("--actor", default="qa", show_default=True, help="Who draws, for the audit log.")
@click.option("--json", "as_json", is_flag=True, help="The sample as one JSON object.")
@db_option
@click.pass_obj
@cli_errors
def qa_sample(config: Config, month: str, rate: float, seed: int | None, actor: str, as_json: bool,
              db_path: Path | None) -> None:
    """Draw the month's QA sample: the rate of each agent's recordings, plus every flagged call; audited."""
    audit, store = open_recordings(config, db_path)
    with audit, store:
        sample = draw_sample(store, audit, month=month, rate=rate, seed=seed, actor=actor)
    items = [{"recording_id": i.recording_id, "agent_id": i.agent_id, "reason": i.reason} for i in sample.items]
    if as_json:
        click.echo(json.dumps({"sample_id": sample.sample_id, "month": month, "rate": rate, "seed": sample.seed,
                               "items": items}, ensure_ascii=False))
        return
    click.echo(f"sample {sample.sample_id} for {month}: rate {rate:g}, seed {sample.seed} "
               f"(rerun with --seed {sample.seed} to redraw it)")
    for item in items:
        click.echo(f"  {item['agent_id']:<16} {item['recording_id']}  {item['reason']}")


@qa.command("report")
@click.option("--month", required=True, help="YYYY-MM (UTC).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per agent.")
@db_option
@click.pass_obj
@cli_errors
def qa_report(config: Config, month: str, as_json: bool, db_path: Path | None) -> None:
    """Coverage per agent for the month: recordings, sampled and reviewed shares, flagged calls, findings."""
    audit, store = open_recordings(config, db_path)
    with audit, store:
        rows = coverage(store, check_month(month))
    if not rows:
        click.echo(f"no recordings in {month}")
    for row in rows:
        data = {"agent_id": row.agent_id, "recordings": row.recordings, "sampled": row.sampled,
                "sampled_rate": round(row.sampled_rate, 3), "reviewed": row.reviewed,
                "reviewed_rate": round(row.reviewed_rate, 3), "flagged": row.flagged, "findings": row.findings,
                "mean_review_score": row.mean_score}
        if as_json:
            click.echo(json.dumps(data, ensure_ascii=False))
            continue
        short = " (BELOW 15%)" if row.sampled_rate < DEFAULT_RATE else ""
        findings = ", ".join(f"{k} {v}" for k, v in row.findings.items()) or "none"
        click.echo(f"{row.agent_id:<16} {row.recordings:>4} calls  sampled {row.sampled} ({row.sampled_rate:.0%})"
                   f"{short}  reviewed {row.reviewed} ({row.reviewed_rate:.0%})  flagged {row.flagged}  "
                   f"findings: {findings}  mean review score {row.mean_score if row.mean_score is not None else '-'}")


@main.group()
def campaign() -> None:
    """Outbound reminder campaigns: import accounts, dial them within the rules, report outcomes."""


@campaign.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Campaign name (default: the file's name without .csv).")
@db_option
@click.pass_obj
@cli_errors
def campaign_import(config: Config, file: Path, name: str | None, db_path: Path | None) -> None:
    """Import accounts from CSV; bad rows are reported by line and left out (exit 3), good ones imported."""
    if _import_campaign(config, file, name, db_path)[1]:
        sys.exit(3)


def _import_campaign(config: Config, file: Path, name: str | None, db_path: Path | None) -> tuple[str, int]:
    """Import a campaign file, report its rejected rows and warnings; returns the name and the rows rejected."""
    parsed = read_campaign_file(file)
    name = name or file.stem
    if parsed.rows_read and not parsed.rows:
        for problem in parsed.problems:
            click.echo(f"rejected: {problem}", err=True)
        raise click.ClickException(f"no valid row in {file}; nothing imported")
    with open_audit(config, db_path) as log, CampaignStore.open(log.path) as store:
        done = store.import_rows(name, parsed.rows, source=file.name, now=datetime.now(UTC))
        problems = sorted(parsed.problems + done.problems, key=lambda p: p.line)
        rejected = len({p.line for p in problems})
        log.append("campaign_import", {"campaign": name, "source": file.name, "added": done.added,
                                       "updated": done.updated, "rejected": rejected}, actor="cli")
    for problem in parsed.warnings:
        click.echo(f"warning: {problem}", err=True)
    for problem in problems:
        click.echo(f"rejected: {problem}", err=True)
    click.echo(f"campaign {name}: {done.added} added, {done.updated} updated, {rejected} of {parsed.rows_read} "
               "row(s) rejected")
    return name, rejected


@campaign.command("run")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Campaign name (default: FILE's name without .csv; needed without FILE).")
@click.option("--pack", "pack_name", default="cn-collection", show_default=True, help="Bundled pack or YAML file.")
@click.option("--sip-proxy", "proxies", multiple=True, required=True, metavar="URI",
              help="Where calls go: sip:{phone}@pbx:5060 or HOST:PORT; repeat as +PREFIX=URI to route by prefix.")
@click.option("--sip-listen", default="127.0.0.1:5090", show_default=True, metavar="HOST:PORT",
              help="Address of our SIP user agent (UDP/TCP, and TCP on the next port).")
@click.option("--max-attempts", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Dials per account until one is answered.")
@click.option("--retry-after-min", type=click.IntRange(1, 43200), default=60, show_default=True,
              help="Minutes before an unanswered, busy or failed dial is retried (never outside the hours).")
@click.option("--dial-timeout-s", type=click.FloatRange(5, 120), default=30.0, show_default=True,
              help="Ringing time before a dial counts as no answer.")
@click.option("--concurrency", type=click.IntRange(1, 32), default=1, show_default=True, help="Calls at once.")
@click.option("--once", is_flag=True, help="One pass over the accounts due now, then exit.")
@click.option("--bot/--no-bot", default=True, show_default=True,
              help="The reminder bot talks on answered calls (--no-bot: hold a few seconds, then hang up).")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder.")
@db_option
@click.pass_obj
@cli_errors
def campaign_run(config: Config, file: Path | None, name: str | None, pack_name: str, proxies: tuple[str, ...],
                 sip_listen: str, max_attempts: int, retry_after_min: int, dial_timeout_s: float, concurrency: int,
                 once: bool, bot: bool, model: Path | None, db_path: Path | None) -> None:
    """Dial a campaign within the rules: one JSON line per account turn; without --once, until none is left."""
    plan = DialPlan.parse(proxies)
    policy = RetryPolicy(max_attempts=max_attempts, retry_after=timedelta(minutes=retry_after_min))
    if file is not None:
        name = _import_campaign(config, file, name, db_path)[0]
    elif not name:
        raise click.UsageError("give a campaign FILE or --name")
    engines = load_engines(config, pack_name, db_path, model)
    try:
        with CampaignStore.open(engines.audit.path) as store:
            store.require(name)
            reports = asyncio.run(run_sip_campaign(
                engines, store, engines.rules.pack, plan, listen=sip_listen, campaign=name, policy=policy,
                once=once, concurrency=concurrency, settings=SipSettings(dial_timeout_s=dial_timeout_s),
                bot=config if bot else None,
                on_attempt=lambda r: click.echo(json.dumps(r.as_dict(), ensure_ascii=False))))
    finally:
        engines.shutdown()
        engines.recordings.close()
        engines.audit.close()
    dialled = sum(r.status != "refused" for r in reports)
    click.echo(f"campaign {name}: {dialled} dialled, {len(reports) - dialled} refused by the gate", err=True)


@campaign.command("report")
@click.option("--campaign", "name", help="One campaign (default: all).")
@click.option("--accounts", is_flag=True, help="Also a line per account (ids only, no personal data).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per campaign.")
@db_option
@click.pass_obj
@cli_errors
def campaign_report_cmd(config: Config, name: str | None, accounts: bool, as_json: bool,
                        db_path: Path | None) -> None:
    """Accounts by stage and state, dials by result, refusals, outcomes and promised amounts; no personal data."""
    path = db_path or config.data_dir / "voicebot.db"
    if not path.is_file():
        raise click.ClickException(f"no database at {path}; import a campaign first")
    with CampaignStore.open(path, pii=False) as store:
        names = [store.require(name)] if name else store.campaigns()
        if not names:
            raise click.ClickException(f"no campaigns in {path}; import one with `voicebot campaign import`")
        for n in names:
            report = campaign_report(store, n, accounts=accounts)
            click.echo(json.dumps(report, ensure_ascii=False) if as_json else format_report(report))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the console and media endpoints.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--pack", "pack_name", default="cn-collection", show_default=True, help="Bundled pack or YAML file.")
@click.option("--mode", type=click.Choice(["in-path", "tap"]), default="in-path", show_default=True,
              help="in-path: we mute and hang up; tap: we alert and ask the PBX to act.")
@click.option("--audiosocket-port", type=click.IntRange(1, 65535), help="Listen for Asterisk AudioSocket.")
@click.option("--audiosocket-host", default="127.0.0.1", show_default=True, help="Address AudioSocket listens on.")
@click.option("--audiosocket-peer", "audiosocket_peers", multiple=True, metavar="IP",
              help="An address Asterisk connects from (repeat for several); none: loopback peers only.")
@click.option("--sip-listen", metavar="HOST:PORT", help="Run the SIP user agent on this address.")
@click.option("--sip-forward", metavar="URI", help="Bridge SIP calls in-path to this URI ({user} = called user).")
@click.option("--tz", "zones", multiple=True, help="Debtor time zone when a call carries none.")
@click.option("--pbx-webhook", metavar="URL", help="Tap mode: POST actions here, signed with the media token.")
@click.option("--rules-only", is_flag=True, help="Supervise with the pack's rules alone, without the semantic model.")
@click.option("--max-calls", type=click.IntRange(0, 10000), default=0, show_default=True,
              help="Calls at once, every adapter together; more are refused at once (0: as measured per core).")
@click.option("--idle-timeout", "idle_timeout_s", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="End a call whose legs bring no media for this many seconds.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="IP",
              help="A reverse proxy (address or network) whose X-Forwarded-For/-Proto headers are believed "
                   "(repeat for several); none: such headers are ignored.")
@click.option("--https", is_flag=True, help="The console is reached over HTTPS (e.g. TLS ends at a proxy that "
                                           "sends no X-Forwarded-Proto): Secure cookies and HSTS.")
@db_option
@click.pass_obj
@cli_errors
def serve(config: Config, host: str, port: int, pack_name: str, mode: str, audiosocket_port: int | None,
          audiosocket_host: str, audiosocket_peers: tuple[str, ...], sip_listen: str | None,
          sip_forward: str | None, zones: tuple[str, ...], pbx_webhook: str | None,
          rules_only: bool, max_calls: int, idle_timeout_s: float, trusted_proxies: tuple[str, ...], https: bool,
          db_path: Path | None) -> None:
    """Run the supervisor console, the media endpoints and the telephony adapters."""
    load_pack(pack_name)
    settings = ServeConfig(db=db_path or config.data_dir / "voicebot.db", media_token=media_token(config.data_dir),
                           host=host, port=port, pack=pack_name, mode=mode, audiosocket_port=audiosocket_port,
                           audiosocket_host=audiosocket_host, audiosocket_peers=audiosocket_peers,
                           sip_listen=sip_listen, sip_forward=sip_forward, zones=zones, pbx_webhook=pbx_webhook,
                           semantic_model=not rules_only, max_calls=max_calls, idle_timeout_s=idle_timeout_s,
                           trusted_proxies=trusted_proxies, https=https)
    try:
        web.run_app(create_app(config, settings), host=host, port=port, print=lambda line: click.echo(line, err=True))
    except TtsEngineMissingError as e:  # an OSError too, but no port is at fault
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot listen ({e.strerror or type(e).__name__}); choose other ports or stop "
                                   "what listens there") from e


@main.command()
@click.option("--agent-input", metavar="DEV", help="The agent's headset microphone, by number or name "
              "(default: the system's default input).")
@click.option("--agent-output", metavar="DEV", help="The agent's headset (default: the system's default output).")
@click.option("--customer-input", metavar="DEV", help="The customer's line into the desk (desk phone line, USB "
              "telephone adapter, a virtual source).")
@click.option("--customer-output", metavar="DEV", help="The line back to the customer.")
@click.option("--pack", "pack_name", default="cn-collection", show_default=True, help="Bundled pack or YAML file.")
@click.option("--tz", "zones", multiple=True, help="IANA zone of the debtor (repeat when sources conflict).")
@click.option("--agent-id", help="Who sits at the desk, for the audit log.")
@click.option("--list-devices", is_flag=True, help="List the sound devices and exit.")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder.")
@db_option
@click.pass_obj
@cli_errors
def softphone(config: Config, agent_input: str | None, agent_output: str | None, customer_input: str | None,
              customer_output: str | None, pack_name: str, zones: tuple[str, ...], agent_id: str | None,
              list_devices: bool, model: Path | None, db_path: Path | None) -> None:
    """Bridge the agent's headset and the customer's line at a desk, supervised in-path; one JSON line per event."""
    desk = _softphone_adapter()
    if list_devices:
        click.echo(desk.list_devices())
        return
    for zone in zones:
        zone_info(zone)
    devices = desk.DeskDevices(agent_input=desk.parse_device(agent_input), agent_output=desk.parse_device(agent_output),
                               customer_input=desk.parse_device(customer_input),
                               customer_output=desk.parse_device(customer_output))
    try:
        phone = desk.Softphone(devices)
        engines = load_engines(config, pack_name, db_path, model)
        asyncio.run(_bridge(phone, engines, CallInfo(adapter="softphone", zones=zones, agent_id=agent_id)))
    except desk.SoundDeviceError as e:
        raise click.ClickException(str(e)) from e


def _softphone_adapter() -> ModuleType:
    """The softphone adapter, imported when used: importing sounddevice starts PortAudio."""
    try:
        from voicebot.adapters import softphone
    except OSError as e:  # sounddevice's import fails this way without the PortAudio library
        raise click.ClickException("the PortAudio library is missing; install the Debian package libportaudio2: "
                                   "sudo apt-get install -y libportaudio2") from e
    return softphone


async def _bridge(phone: Any, engines: Engines, info: CallInfo) -> None:
    """Run the desk bridge until hang-up, a lost device or Ctrl-C, printing each event."""
    board = CallBoard()
    events = board.listen(maxsize=0)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, phone.stop, "the agent left the desk")
    await follow_events(events, asyncio.create_task(phone.run(engines, board, info)), print_event)


@main.group()
def nlu() -> None:
    """Train, run and evaluate the customer-reply intent classifier."""


@nlu.command("train")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DATA_FILE,
              show_default=True, help="Labelled utterances, intent<TAB>text.")
@click.option("--seed", default=0, show_default=True, help="Seed for initialisation and batch order.")
@click.option("--if-missing", is_flag=True, help="Do nothing when a model trained on this data is installed.")
@click.pass_obj
@cli_errors
def nlu_train(config: Config, data_path: Path, seed: int, if_missing: bool) -> None:
    """Train the small BERT and the n-gram model, keep the better on the held-out 20%, install it."""
    if if_missing and model_is_current(config.models_dir, data_path):
        click.echo("intent model is installed and current", err=True)
        return
    report = train_intent_model(config.models_dir, config.shared_dir, data_path, seed)
    click.echo(json.dumps(report_json(report), ensure_ascii=False))


@nlu.command("classify")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--today", "today_text", help="Date that relative dates count from, ISO-8601 (default: today).")
@click.pass_obj
@cli_errors
def nlu_classify(config: Config, source: TextIO, today_text: str | None) -> None:
    """Read replies one per line (stdin by default); print {text, intent, confidence, slots} per line."""
    today = _parse_today(today_text)
    classifier = IntentClassifier.load(config.models_dir)
    for line in source:
        text = line.rstrip("\r\n")
        click.echo(json.dumps(understanding_json(classifier.classify(text, today)), ensure_ascii=False))


@nlu.command("eval")
@click.option("--recall", is_flag=True, help="Also print the held-out recall of each intent.")
@click.pass_obj
@cli_errors
def nlu_eval(config: Config, recall: bool) -> None:
    """Print the installed model's accuracy figures as JSON lines: held-out, thano (mapped), tts-cmn transcripts."""
    from voicebot.nlu.evaluate import accuracy_figures

    classifier = IntentClassifier.load(config.models_dir)
    if not model_is_current(config.models_dir, DATA_FILE):
        click.echo("warning: the model was trained on other data; its held-out figures are not held out",
                   err=True)
    for row in accuracy_figures(classifier.model, classifier.info.kind, config.shared_dir, recall=recall):
        click.echo(json.dumps(row, ensure_ascii=False))


def _parse_today(text: str | None) -> date:
    if text is None:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 date", param_hint="--today") from e
