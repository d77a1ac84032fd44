"""Commands on rule packs, the semantic model and call scripts."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click

from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import CallMonitor, CallState, Flag, RuleEngine
from compliance_rules.held_out import held_out_texts, retire
from compliance_rules.pack import RulePackError, load_pack
from compliance_rules.semantic import MODEL_DIR
from compliance_rules.timing import Agreement, Attempt, pre_dial_check
from compliance_rules.training import REPLIES_DIR, TRAIN_DIR, train
from scripts_library import ScriptError, bundled_scripts, load_script
from voicebot.cli.base import (
    cli_errors,
    main,
)
from voicebot.config import Config

CONTEXTS = ("verified", "unverified", "disputed", "third_party")
LEG_PREFIX = re.compile(r"^(agent|customer)\s*[:：]\s*")
MAX_UTTERANCE_CHARS = 2000
BLIND_DIR = Path(__file__).resolve().parents[2] / "bench" / "data" / "blind"
CALIBRATION_SETS = tuple(BLIND_DIR / f"blind{name}.tsv" for name in (
    "4_zh", "4_en", "5_zh", "5_en", "7_zh", "7_en", "8_zh", "10_en", "11_en", "12_zh", "13_en", "14_zh",
    "15_en", "16_zh", "17_en", "18_zh", "19_en", "20_zh", "21_en", "22_zh", "25_en", "26_zh", "27_en"))
MODEL_PACKS = ("cn-collection", "us-fdcpa-regf")
"""The packs whose rules the model's veto is calibrated against, one per language."""


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
    """Copy studied blind sets (TSV, or a whole-call JSONL's agent lines) into the training data as
    retired_<name>.tsv; remove their frozen copies from bench/data/blind yourself, then retrain."""
    for path in paths:
        click.echo(f"wrote {retire(path)}")


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


