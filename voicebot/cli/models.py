"""Set-up commands: fetch the models, and train, run and evaluate the intent model."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TextIO

import click

from voicebot.cli.base import (
    cli_errors,
    main,
)
from voicebot.config import Config
from voicebot.models import (
    ensure_static_graph,
    fetch_diarization_models,
    fetch_vosk_model,
    fetch_whisper_model,
    vosk_model_sources,
)
from voicebot.nlu.classify import IntentClassifier, understanding_json
from voicebot.nlu.data import DATA_FILE
from voicebot.nlu.train import model_is_current, report_json, train_intent_model


@main.group()
def models() -> None:
    """Install and locate the offline models."""


@models.command("fetch")
@click.pass_obj
@cli_errors
def models_fetch(config: Config) -> None:
    """Install the Vosk Mandarin model, its static decoding graph, the English Whisper model and the diarization
    models into the models folder (checked by sha256)."""
    sources = vosk_model_sources(config.vosk_model_source, config.shared_dir)
    path = fetch_vosk_model(config.models_dir, sources)
    click.echo(f"Vosk model ready: {path}")
    click.echo(f"Static decoding graph ready: {ensure_static_graph(path)}")
    click.echo(f"English Whisper model ready: {fetch_whisper_model(config.models_dir)}")
    for folder in fetch_diarization_models(config.models_dir, config.shared_dir):
        click.echo(f"Diarization model ready: {folder}")



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

