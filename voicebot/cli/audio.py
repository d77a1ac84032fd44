"""Commands on audio: transcribe files, replay a call through the live path (`monitor`), and the demo."""


from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from asr.codecs import ENCODINGS, STREAM_RATES, Audio, AudioFormatError, read_audio_file, read_raw_file
from asr.transcribe import LegTranscript, transcribe_audio
from asr.vosk_engine import VoskEngine
from asr.whisper_engine import WhisperEngine
from voicebot.adapters.replay import follow_replay, load_call_audio
from voicebot.call import CallInfo
from voicebot.cli.base import (
    cli_errors,
    db_option,
    load_engines,
    main,
    parse_start,
    print_event,
)
from voicebot.config import Config
from voicebot.demo import demo_audio, run_demo
from voicebot.sql import Target

RAW_SUFFIXES = {".ul": "ulaw", ".ulaw": "ulaw", ".mulaw": "ulaw", ".al": "alaw", ".alaw": "alaw",
                ".pcm": "pcm16", ".raw": "pcm16", ".s16": "pcm16"}


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (and leg) with word times.")
@click.option("--no-vad", is_flag=True, help="Recognise silence too instead of gating it away.")
@click.option("--encoding", type=click.Choice(ENCODINGS), help="Headerless input encoding (default by suffix).")
@click.option("--rate", type=click.Choice([str(r) for r in STREAM_RATES]), default="8000",
              help="Sample rate of headerless input.")
@click.option("--language", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="zh: Mandarin (Vosk); en: English (Whisper tiny.en).")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="The language's model folder.")
@click.pass_obj
@cli_errors
def transcribe(config: Config, files: tuple[Path, ...], as_json: bool, no_vad: bool,
               encoding: str | None, rate: str, language: str, model: Path | None) -> None:
    """Transcribe audio files (WAV/FLAC of any rate, stereo = agent|customer, or raw G.711/PCM16)."""
    engine = WhisperEngine.load(model or config.whisper_model) if language == "en" else \
        VoskEngine.load(model or config.vosk_model)
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
def demo(config: Config, model: Path | None, speed: float, db_path: Target | None) -> None:
    """The bot reminds a simulated debtor and records a promise to pay; then an agent's threat is cut off live."""
    tts = config.shared_dir / "audio" / "tts-cmn"
    missing = [str(p) for p in demo_audio(tts) if not p.is_file()]
    if missing:
        raise click.ClickException(f"demo audio not found: {', '.join(missing)}; "
                                   "set VOICEBOT_SHARED_DIR to the shared/ folder")
    engines = load_engines(config, "cn-collection", db_path or config.data_dir / "demo.db", model)
    run_demo(config, engines, tts, speed=speed, vosk_model=model or config.vosk_model, say=click.echo)


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
            speed: float, model: Path | None, db_path: Target | None) -> None:
    """Replay a stereo call (or agent and customer files) through the live path; print one JSON line per event."""
    audio = load_call_audio(list(files))
    start = parse_start(start_text, zones)
    engines = load_engines(config, pack_name, db_path, model)
    info = CallInfo(adapter="replay", zones=zones, started_at=start, speed=speed)
    asyncio.run(follow_replay(audio, engines, info, print_event))

