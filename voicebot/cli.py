"""The `voicebot` command: set-up, transcription and the demo."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from asr.codecs import ENCODINGS, STREAM_RATES, Audio, AudioFormatError, read_audio_file, read_raw_file
from asr.transcribe import LegTranscript, transcribe_audio
from asr.vosk_engine import ModelMissingError, VoskEngine
from voicebot.config import Config, ConfigError, load_config
from voicebot.models import ModelFetchError, fetch_vosk_model, vosk_model_sources

RAW_SUFFIXES = {".ul": "ulaw", ".ulaw": "ulaw", ".mulaw": "ulaw", ".al": "alaw", ".alaw": "alaw",
                ".pcm": "pcm16", ".raw": "pcm16", ".s16": "pcm16"}
EXPECTED_ERRORS = (AudioFormatError, ModelMissingError, ModelFetchError, ConfigError)


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


@main.group()
def models() -> None:
    """Install and locate the offline models."""


@models.command("fetch")
@click.pass_obj
@cli_errors
def models_fetch(config: Config) -> None:
    """Install the Vosk Mandarin model into the models folder (checked by sha256)."""
    sources = vosk_model_sources(config.vosk_model_source, config.shared_dir)
    path = fetch_vosk_model(config.models_dir, sources)
    click.echo(f"Vosk model ready: {path}")


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
@click.pass_obj
@cli_errors
def demo(config: Config, model: Path | None) -> None:
    """Transcribe the demo two-leg call and print each utterance with its times."""
    if not config.demo_call.is_file():
        raise click.ClickException(
            f"demo call not found at {config.demo_call}; set VOICEBOT_SHARED_DIR to the shared/ folder"
        )
    engine = VoskEngine.load(model or config.vosk_model)
    audio = read_audio_file(config.demo_call)
    click.echo(f"{config.demo_call.name}: {audio.duration_s:.1f} s, {len(audio.channels)} legs")
    utterances = [(e.start_s or 0.0, e.end_s or 0.0, leg.leg or "mono", e.text)
                  for leg in transcribe_audio(engine, audio) for e in leg.finals]
    for start_s, end_s, leg, text in sorted(utterances):
        click.echo(f"[{start_s:6.2f}–{end_s:6.2f}] {leg:<8} {text}")


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
