"""The demo, end to end: the bot reminds a simulated debtor and records a promise to pay; an agent's threat is cut off
live; QA screens the new recordings and draws the month's sample; the audit chain is verified. `say` prints a line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from asr.codecs import read_audio_file
from recordings.qa import draw_sample
from voicebot.adapters.replay import (
    SimulatedDebtor,
    follow_events,
    follow_replay,
    load_call_audio,
    simulate_bot_call,
)
from voicebot.call import CallBoard, CallInfo, Engines
from voicebot.config import Config

Say = Callable[[str], None]
DEBTOR = {"name": "李娜", "id_last4": "1234", "amount": "3200", "due_date": "2026-11-03", "lender": "示例银行",
          "days_overdue": "20"}


def demo_audio(tts: Path) -> list[Path]:
    """The shared recordings the demo plays: the threatening agent call, and the debtor's two replies."""
    return [tts / "calls" / "call_agent_threat.wav", tts / "c01.wav", tts / "c05.wav"]


def run_demo(config: Config, engines: Engines, tts: Path, *, speed: float, vosk_model: Path, say: Say) -> None:
    """Both calls, then QA's side and the audit check, telling each step with `say`."""
    threat_call, name_reply, payment_reply = demo_audio(tts)
    office_hours = datetime.now(ZoneInfo("Asia/Shanghai")).replace(hour=10, minute=0, second=0, microsecond=0)
    say(f"== the bot calls a simulated debtor (replies from {tts.name}/c01.wav, keys 1234, c05.wav), {speed:g}x")
    debtor = SimulatedDebtor({"ask_name": read_audio_file(name_reply), "ask_id_digits": "1234",
                              "ask_payment": read_audio_file(payment_reply)}, speed=speed)
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=office_hours, speed=speed,
                    agent_id="bot-01")
    asyncio.run(follow_bot(config, engines, info, debtor, lambda e: show_event(e, say)))
    audio = load_call_audio([threat_call])
    say(f"== a supervised agent call: {threat_call.name}, {audio.duration_s:.1f} s, 2 legs, {speed:g}x")
    info = CallInfo(adapter="replay", zones=("Asia/Shanghai",), started_at=office_hours, speed=speed)
    asyncio.run(follow_replay(audio, engines, info, lambda e: show_event(e, say)))
    screen_and_sample(engines, vosk_model, office_hours, say)
    report = engines.audit.verify()
    say(f"== audit log {engines.audit.path}: {report.records} records, "
        f"hash chain {'intact' if report.ok else 'BROKEN: ' + str(report.problem)}")


def screen_and_sample(engines: Engines, vosk_model: Path, at: datetime, say: Say) -> None:
    """QA's side of the demo: screen the new recordings, then draw the month's review sample."""
    from recordings.batch_screening import ScreenModels, screen_pending

    say("== screening the new recordings (transcript per leg, rule pack, scorecard)")
    report = screen_pending(engines.recordings, ScreenModels(vosk_model=vosk_model), workers=1)
    for outcome in report.outcomes:
        if outcome.screening is None:
            say(f"{'':17}{outcome.recording_id}: failed ({outcome.error})")
            continue
        failed = [k for k, item in outcome.screening.scorecard.items() if item.mark == "fail"]
        say(f"{'':17}{outcome.recording_id}: score {outcome.screening.score:g}, "
            f"{len(outcome.screening.flags)} flag(s), failed: {', '.join(failed) or 'nothing'}")
    month = f"{at.astimezone(UTC):%Y-%m}"
    sample = draw_sample(engines.recordings, engines.audit, month=month, actor="demo")
    say(f"== QA sample for {month} (seed {sample.seed}): " + ", ".join(
        f"{i.recording_id} ({i.agent_id}, {i.reason})" for i in sample.items))


async def follow_bot(config: Config, engines: Engines, info: CallInfo, debtor: SimulatedDebtor,
                     show: Callable[[dict[str, Any]], None]) -> None:
    """The bot's call to the simulated debtor, each event shown as it happens."""
    board = CallBoard()
    events = board.listen(maxsize=0)
    await follow_events(events, asyncio.create_task(simulate_bot_call(config, engines, board, info, DEBTOR, debtor)),
                        show)


def show_event(event: dict[str, Any], say: Say) -> None:
    """One line for what the demo shows of an event: outcomes, finals, flags, actions and the call's end."""
    kind = event["type"]
    if kind == "outcome":
        promise = f"{event['promise_amount'] or '-'} by {event['promise_date'] or '-'}"
        say(f"{'':17}OUTCOME {event['kind']}: {promise}")
    elif kind == "final":
        say(f"[{event['start_s'] or 0:6.2f}–{event['end_s'] or 0:6.2f}] {event['leg']:<8} {event['text']}")
    elif kind == "flag":
        label = "signal" if event["signal"] else f"FLAG {event['severity']}"
        where = f"score {event['score']:.2f}" if event.get("source") == "model" else f"on {event['matched']!r}"
        say(f"{'':17}{label}: {event['category']} ({event['rule']}) {where}")
    elif kind == "action":
        delay = f", {event['delay_ms']:.0f} ms after the words" if "delay_ms" in event else ""
        say(f"{'':17}ACTION {event['action']} by {event['actor']}{delay}")
    elif kind == "call_end":
        say(f"== ended ({event['reason']}) after {event['duration_s']} s; recordings: {', '.join(event['recordings'])}")
