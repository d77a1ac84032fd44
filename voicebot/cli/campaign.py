"""Campaign commands: import accounts, run the dialer, report."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from voicebot.adapters.sip import SipSettings
from voicebot.campaigns import (
    CampaignStore,
    DialPlan,
    RetryPolicy,
    campaign_report,
    format_report,
    read_campaign_file,
    run_sip_campaign,
)
from voicebot.campaigns.lifecycle import DebtBook, DebtStateError
from voicebot.campaigns.lists import ListKind, apply_cease, apply_payments, read_list_file
from voicebot.campaigns.pauses import Pauses, Scope
from voicebot.campaigns.store import pii_cipher
from voicebot.campaigns.strategy import load_strategy
from voicebot.cli.base import (
    cli_errors,
    db_option,
    load_engines,
    main,
    open_audit,
)
from voicebot.config import Config
from voicebot.sql import Target, is_url
from voicebot.stores import open_campaigns, pii_key


@main.group()
def campaign() -> None:
    """Outbound reminder campaigns: import accounts, dial them within the rules, report outcomes."""


@campaign.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Campaign name (default: the file's name without .csv).")
@db_option
@click.pass_obj
@cli_errors
def campaign_import(config: Config, file: Path, name: str | None, db_path: Target | None) -> None:
    """Import accounts from CSV; bad rows are reported by line and left out (exit 3), good ones imported."""
    if _import_campaign(config, file, name, db_path)[1]:
        sys.exit(3)


def _import_campaign(config: Config, file: Path, name: str | None, db_path: Target | None) -> tuple[str, int]:
    """Import a campaign file, report its rejected rows and warnings; returns the name and the rows rejected."""
    parsed = read_campaign_file(file)
    name = name or file.stem
    if parsed.rows_read and not parsed.rows:
        for problem in parsed.problems:
            click.echo(f"rejected: {problem}", err=True)
        raise click.ClickException(f"no valid row in {file}; nothing imported")
    with open_audit(config, db_path) as log, open_campaigns(config, log.path) as store:
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
@click.option("--strategy", "strategy_name", metavar="NAME|FILE",
              help="Work the accounts over weeks under a collection strategy (cn-standard, us-standard or a YAML "
                   "file) until stopped, instead of retrying each up to --max-attempts.")
@click.option("--bot/--no-bot", default=True, show_default=True,
              help="The reminder bot talks on answered calls (--no-bot: hold a few seconds, then hang up).")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder.")
@db_option
@click.pass_obj
@cli_errors
def campaign_run(config: Config, file: Path | None, name: str | None, pack_name: str, proxies: tuple[str, ...],
                 sip_listen: str, max_attempts: int, retry_after_min: int, dial_timeout_s: float, concurrency: int,
                 once: bool, strategy_name: str | None, bot: bool, model: Path | None, db_path: Target | None) -> None:
    """Dial a campaign within the rules: one JSON line per account turn; without --once, until none is left."""
    plan = DialPlan.parse(proxies)
    strategy = load_strategy(strategy_name) if strategy_name else None
    policy = RetryPolicy(max_attempts=max_attempts, retry_after=timedelta(minutes=retry_after_min))
    if file is not None:
        name = _import_campaign(config, file, name, db_path)[0]
    elif not name:
        raise click.UsageError("give a campaign FILE or --name")
    engines = load_engines(config, pack_name, db_path, model)
    try:
        with open_campaigns(config, engines.audit.path) as store:
            store.require(name)
            reports = asyncio.run(run_sip_campaign(
                engines, store, engines.rules.pack, plan, listen=sip_listen, campaign=name, policy=policy,
                once=once, concurrency=concurrency, settings=SipSettings(dial_timeout_s=dial_timeout_s),
                bot=config if bot else None, strategy=strategy,
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
                        db_path: Target | None) -> None:
    """Accounts by stage and state, dials by result, refusals, outcomes and promised amounts; no personal data."""
    path = db_path or config.data_dir / "voicebot.db"
    if not is_url(path) and not Path(path).is_file():
        raise click.ClickException(f"no database at {path}; import a campaign first")
    with CampaignStore.open(path, pii=False) as store:
        names = [store.require(name)] if name else store.campaigns()
        if not names:
            raise click.ClickException("no campaigns yet; import one with `voicebot campaign import`")
        for n in names:
            report = campaign_report(store, n, accounts=accounts)
            click.echo(json.dumps(report, ensure_ascii=False) if as_json else format_report(report))




def _list_file(config: Config, file: Path, kind: ListKind, db_path: Target | None) -> None:
    """Validate a payments or cease file, apply its good rows to the debts, report; exit 3 if rows were refused."""
    rows, problems = read_list_file(file, kind)
    with open_audit(config, db_path) as log, CampaignStore.open(log.path, pii=False) as store, \
            DebtBook.open(log.path, log) as book:
        if kind == "payments":
            done = apply_payments(book, store, rows, source=file.name)
        else:
            done = apply_cease(book, rows, source=file.name, now=datetime.now(UTC))
    for status in done:
        click.echo(json.dumps({"debt": status.debt, "state": status.state, "paid": str(status.paid)},
                              ensure_ascii=False))
    for problem in problems:
        click.echo(f"rejected: {problem}", err=True)
    click.echo(f"{kind}: {len(done)} applied, {len({p.line for p in problems})} row(s) rejected", err=True)
    if problems:
        sys.exit(3)


@campaign.command("payments")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@click.pass_obj
@cli_errors
def campaign_payments(config: Config, file: Path, db_path: Target | None) -> None:
    """Import payments (CSV: lender, account_id, amount, paid_on): a debt is paid once its balance is covered, a
    promise kept by its amount by its date."""
    _list_file(config, file, "payments", db_path)


@campaign.command("cease")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@click.pass_obj
@cli_errors
def campaign_cease(config: Config, file: Path, db_path: Target | None) -> None:
    """Import cease requests and do-not-call entries (CSV: lender, account_id): no campaign dials them again."""
    _list_file(config, file, "cease", db_path)


@campaign.command("resolve")
@click.argument("debt")
@click.option("--note", required=True, help="How the dispute was settled (kept sealed, at most 500 characters).")
@click.option("--user", "username", required=True, help="Who resolved it, for the audit log.")
@db_option
@click.pass_obj
@cli_errors
def campaign_resolve(config: Config, debt: str, note: str, username: str, db_path: Target | None) -> None:
    """Resolve a disputed DEBT (LENDER/ACCOUNT_ID): reminding resumes and its blocked accounts are due again."""
    now = datetime.now(UTC)
    with open_audit(config, db_path) as log, open_campaigns(config, log.path) as store, \
            DebtBook.open(log.path, log, store.cipher) as book:
        try:
            status = book.resolve(debt, user=username, note=note[:500], at=now)
        except DebtStateError as e:
            raise click.ClickException(str(e)) from None
        released = store.release(debt, now)
    click.echo(f"{debt}: {status.state}; {released} account(s) due again")


@campaign.command("debts")
@click.option("--debt", help="One debt's state and history (LENDER/ACCOUNT_ID).")
@db_option
@click.pass_obj
@cli_errors
def campaign_debts(config: Config, debt: str | None, db_path: Target | None) -> None:
    """How many debts are in each lifecycle state, or one debt's state and history (notes opened), as JSON."""
    with open_audit(config, db_path) as log, \
            DebtBook.open(log.path, log, pii_cipher(log.path, pii_key(config, log.path)) if debt else None) as book:
        if debt is None:
            click.echo(json.dumps(book.counts()))
            return
        status = book.status(debt)
        click.echo(json.dumps({"debt": debt, "state": status.state, "paid": str(status.paid),
                               "promise_date": status.promise_date.isoformat() if status.promise_date else None,
                               "promise_amount": str(status.promise_amount) if status.promise_amount else None,
                               "history": book.history(debt)}, ensure_ascii=False))


def _pause_target(campaign_name: str | None, account: str | None, pack: str | None) -> tuple[Scope, str]:
    given = [(scope, name) for scope, name in (("campaign", campaign_name), ("account", account), ("pack", pack))
             if name]
    if len(given) != 1:
        raise click.UsageError("name exactly one of --campaign, --account CAMPAIGN/ACCOUNT_ID or --pack")
    return given[0]  # type: ignore[return-value]


def _pause_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--campaign, --account, --pack and --user, as pause and resume take them."""
    for option in reversed((click.option("--campaign", "campaign_name", help="A whole campaign."),
                            click.option("--account", help="One account: CAMPAIGN/ACCOUNT_ID."),
                            click.option("--pack", help="Every run under this pack."),
                            click.option("--user", "username", required=True, help="Who does it, for the audit log."))):
        fn = option(fn)
    return fn


@campaign.command("pause")
@_pause_options
@db_option
@click.pass_obj
@cli_errors
def campaign_pause(config: Config, campaign_name: str | None, account: str | None, pack: str | None, username: str,
                   db_path: Target | None) -> None:
    """Stop dialling an account, a campaign or a pack (runs going on skip it from their next pass) until resumed."""
    scope, name = _pause_target(campaign_name, account, pack)
    with open_audit(config, db_path) as log, Pauses.open(log.path, log) as pauses:
        pauses.pause(scope, name, by=username, at=datetime.now(UTC))
    click.echo(f"paused {scope} {name}")


@campaign.command("resume")
@_pause_options
@db_option
@click.pass_obj
@cli_errors
def campaign_resume(config: Config, campaign_name: str | None, account: str | None, pack: str | None, username: str,
                    db_path: Target | None) -> None:
    """Dial a paused account, campaign or pack again."""
    scope, name = _pause_target(campaign_name, account, pack)
    with open_audit(config, db_path) as log, Pauses.open(log.path, log) as pauses:
        resumed = pauses.resume(scope, name, by=username)
    click.echo(f"resumed {scope} {name}" if resumed else f"{scope} {name} was not paused")
