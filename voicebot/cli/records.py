"""Commands on what is kept: the audit log, console users, recordings and QA."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click

from asr.codecs import AudioFormatError, read_audio_file
from asr.diarize import Diarizer
from asr.vosk_engine import VoskEngine
from recordings.importer import diarized_split, import_recording
from recordings.qa import DEFAULT_RATE, check_month, coverage, draw_sample
from voicebot.cli.base import (
    cli_errors,
    db_option,
    main,
    open_audit,
    open_log_and_recordings,
    parse_start,
)
from voicebot.config import Config
from voicebot.sql import Target
from voicebot.stores import open_audit_log
from voicebot.web.auth import ROLES, UserStore, check_password_text


@main.group()
def audit() -> None:
    """Verify and export the tamper-evident audit log."""


def key_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--key PATH`: a shared store's audit key file."""
    return click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="With a shared --db: the audit key file, the same on every node "
                             "(default: <data folder>/audit.key).")(fn)


@audit.command("verify")
@db_option
@key_option
@click.pass_obj
@cli_errors
def audit_verify(config: Config, db_path: Path | str | None, key_path: Path | None) -> None:
    """Check the hash chain; report the first altered, deleted or reordered record (exit 4)."""
    with open_audit_log(config, db_path or config.data_dir / "voicebot.db", key_path) as log:
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
@key_option
@click.pass_obj
@cli_errors
def audit_export(config: Config, fmt: str, output: TextIO, db_path: Path | str | None,
                 key_path: Path | None) -> None:
    """Write every audit record as JSONL or CSV."""
    with open_audit_log(config, db_path or config.data_dir / "voicebot.db", key_path) as log:
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
def users_add(config: Config, name: str, role: str, password_stdin: bool, db_path: Target | None) -> None:
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
def users_list(config: Config, db_path: Target | None) -> None:
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
def users_disable(config: Config, name: str, db_path: Target | None) -> None:
    """Disable a user and end their console sessions at once."""
    _set_disabled(config, name, db_path, disabled=True)


@users.command("enable")
@click.argument("name")
@db_option
@click.pass_obj
@cli_errors
def users_enable(config: Config, name: str, db_path: Target | None) -> None:
    """Re-enable a disabled user."""
    _set_disabled(config, name, db_path, disabled=False)


def _set_disabled(config: Config, name: str, db_path: Target | None, *, disabled: bool) -> None:
    event = "disable" if disabled else "enable"
    with open_audit(config, db_path) as log, UserStore.open(log.path) as store:
        user = store.set_disabled(name, disabled)
        log.append("user", {"event": event, "username": user.username}, actor="cli")
    click.echo(f"{event}d {user.username}")



@main.group()
def recordings() -> None:
    """The sealed call recordings: list, import, screen, rotate the key, purge after retention."""


@recordings.command("list")
@click.option("--month", help="YYYY-MM (UTC).")
@click.option("--agent", "agent_id", help="One agent.")
@db_option
@click.pass_obj
@cli_errors
def recordings_list(config: Config, month: str | None, agent_id: str | None, db_path: Target | None) -> None:
    """One JSON line per recording: id, agent, times, status, outcome, flag categories."""
    audit, store = open_log_and_recordings(config, db_path)
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
                      started_text: str | None, swap: bool, model: Path | None, db_path: Target | None) -> None:
    """Seal external recordings (WAV, MP3, FLAC) into the store; mono ones are split into agent and customer by
    speaker diarization. A file that cannot be read is reported and the others are still imported (exit 1)."""
    started = parse_start(started_text, ()) if started_text else None
    split = None
    failed = 0
    audit, store = open_log_and_recordings(config, db_path)
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
def recordings_rotate_key(config: Config, actor: str, db_path: Target | None) -> None:
    """Add a new recording key, seal new recordings with it and rewrap the finished ones (old keys are kept)."""
    audit, store = open_log_and_recordings(config, db_path)
    with audit, store:
        key_id, rewrapped = store.rotate_key(audit, actor=actor)
    click.echo(f"new key {key_id}; {rewrapped} recording(s) rewrapped; keep {store.ring.path} backed up")


@recordings.command("purge")
@click.option("--actor", default="retention", show_default=True, help="Who purges, for the audit log.")
@db_option
@click.pass_obj
@cli_errors
def recordings_purge(config: Config, actor: str, db_path: Target | None) -> None:
    """Delete recordings past their retention (at least three years); each deletion is audited."""
    audit, store = open_log_and_recordings(config, db_path)
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
                      pack_name: str, db_path: Target | None) -> None:
    """Screen every recording not screened yet: transcribe both legs, run the rule pack, fill the scorecard.

    Prints one JSON line per recording (id, score, flag count; never the transcript), then a summary line. Resumable
    and never screens a call twice: each recording is claimed first, a run that stopped is picked up after an hour,
    and a failed recording is retried by later runs (3 tries). Run it periodically (cron, a systemd timer) so that
    new calls are screened.
    """
    from recordings.batch_screening import ScreenModels, screen_pending
    from recordings.screening import ScreeningError

    audit, store = open_log_and_recordings(config, db_path)
    with audit, store:
        try:
            report = screen_pending(store, ScreenModels.of(config, pack_name),
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
              db_path: Target | None) -> None:
    """Draw the month's QA sample: the rate of each agent's recordings, plus every flagged call; audited."""
    audit, store = open_log_and_recordings(config, db_path)
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
def qa_report(config: Config, month: str, as_json: bool, db_path: Target | None) -> None:
    """Coverage per agent for the month: recordings, sampled and reviewed shares, flagged calls, findings."""
    audit, store = open_log_and_recordings(config, db_path)
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


