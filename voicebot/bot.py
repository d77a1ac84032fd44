"""A bot call: the script's lines are spoken on the agent leg; the customer's leg is heard, understood, answered."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import numpy as np

from scripts_library import Script, ScriptError, bundled_script, select_script
from voicebot.call import Call, CallBoard, CallInfo, Engines, LanguageNotServed, supervise
from voicebot.config import Config
from voicebot.dialog import MAX_CALL_S, Dialog
from voicebot.dialog_data import Account, AccountError, Caller, Outcome
from voicebot.frames import BotSayFrame, Leg
from voicebot.nlu import Understanding
from voicebot.pipeline import Pipeline
from voicebot.playout import SAMPLE_RATE, Played, Playout
from voicebot.stages.converse import Converse
from voicebot.stages.decode import Decode
from voicebot.stages.enforce import CallControl
from voicebot.stages.recognize import Recognize
from voicebot.stages.record import Record
from voicebot.stages.speak import Speak
from voicebot.stages.understand import Understand
from voicebot.stages.vad_gate import VadGate
from voicebot.tts import PromptCache, build_prompts

DEFAULT_COMPANY = {"zh": "贷后服务中心", "en": "the customer service center"}
"""Said before the debtor is verified, so nothing in it may say "debt" or "collection" (15 USC 1692b, 1692c(b))."""
SILENCE_S = 6.0
"""Seconds of quiet after the bot's last word before the dialog hears silence."""
TICK_S = 0.25
TURN_PAUSE_MS = 250
"""A pause this long ends the customer's turn when what they said is already complete (stages/understand.py);
otherwise the VAD's full hangover does."""


class BotSetupError(ValueError):
    """A bot call that cannot start: no NLU model, no script for the account, or account fields that are wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class BotKit:
    """What bot calls share in a process: the intent classifier and the prompts (8 kHz, cached when fixed)."""

    classify: Callable[[str, date], Understanding]
    prompts: PromptCache

    def speaker(self, script: Script) -> Callable[[BotSayFrame], np.ndarray]:
        """Audio for a script's lines: lines with the debtor's details are synthesised afresh, never stored."""

        def synthesize(frame: BotSayFrame) -> np.ndarray:
            line = script.lines.get(frame.line_id)
            fixed = line is not None and not line.placeholders
            return self.prompts.prompt(frame.text, script.language, line_id=frame.line_id if fixed else None,
                                       cache=fixed)

        return synthesize


class Outlet(CallControl, Protocol):
    """The adapter's side of a bot call: where the bot's audio goes, how it is cut short, how the call ends."""

    async def send(self, pcm: np.ndarray) -> None:
        """Send 20 ms of 8 kHz PCM to the customer."""

    async def clear(self) -> None:
        """Drop audio the adapter or the far end has buffered (Twilio `clear`, RTP send buffer)."""


class BotCall:
    """One call the bot makes or answers; `start()`, feed the customer's audio to `call`, then `end()`."""

    def __init__(self, info: CallInfo, engines: Engines, kit: BotKit, dialog: Dialog, outlet: Outlet,
                 board: CallBoard) -> None:
        self.kit = kit
        self.dialog = dialog
        self.outlet = outlet
        self.playout = Playout(send=outlet.send, record=self._record, clear=outlet.clear, done=self._played,
                               speed=info.speed)
        self.converse = Converse(dialog, on_state=self._sync_state)
        self.speak: Speak | None = None
        self.call = Call(info, engines, outlet, board, build=self._build)
        self._tasks: list[asyncio.Task[None]] = []

    def _build(self, call: Call, leg: Leg, control: CallControl) -> Pipeline:
        """The bot's leg is only recorded (its words are known); the customer's is heard and answered."""
        e, name = call.engines, f"{call.call_id[:8]}:{leg}"
        if leg == "agent":
            return Pipeline([Decode(), Record(call.recording), *supervise(call, control, e.executor)], name=name)
        self.speak = Speak(self.kit.speaker(self.dialog.script), self.playout, e.executor,
                           call_time_s=lambda: (time.monotonic() - call.audio_wall_s(0.0)) * call.info.speed)
        today = lambda: call.info.started_at.date()  # noqa: E731
        return Pipeline([
            Decode(),
            Record(call.recording),
            VadGate(leg, bot_speaking=lambda: self.playout.speaking, pause_ms=TURN_PAUSE_MS),
            Recognize(leg, e.asr, e.executor),
            Understand(self.kit.classify, today, e.executor),
            self.converse,
            self.speak,
            *supervise(call, control, e.executor),
        ], name=name)

    async def start(self) -> None:
        """Start the call, its playout and its silence watch, and say the opening."""
        await self.call.start()
        self._tasks = [asyncio.create_task(self.playout.run()), asyncio.create_task(self._watch())]
        self._say(self.dialog.start())

    async def end(self, reason: str) -> None:
        """Stop speaking, write the outcome to the audit log, and end the call."""
        for task in self._tasks:
            task.cancel()
        outcome = outcome_data(self.dialog)
        self.call.outcome = outcome["kind"]
        self.call.agent_lines = self.speak.said if self.speak else []
        self.call.emit({"type": "outcome", **outcome})
        append = partial(self.call.engines.audit.append, "bot_outcome", outcome, call_id=self.call.call_id,
                         actor="bot")
        await asyncio.get_running_loop().run_in_executor(self.call.engines.disk, append)
        await self.call.end(reason)

    def _say(self, lines: list) -> None:
        for line in lines:
            self.call.legs["customer"].queue(BotSayFrame(line_id=line.line_id, text=line.text,
                                                         end_call=line.end_call, transfer=line.transfer))

    def _record(self, pcm: np.ndarray) -> None:
        self.call.feed("agent", pcm.tobytes(), "pcm16", SAMPLE_RATE)

    async def _played(self, played: Played) -> None:
        if played.end_call or played.transfer:
            await self.outlet.hangup("bot: transfer to a human" if played.transfer else f"bot: {played.line_id}")

    def _sync_state(self) -> None:
        """The rule engine judges the call in the dialog's state: verified, disputed, third party."""
        state = self.call.monitor.state
        state.verified, state.disputed, state.third_party = (self.dialog.state.verified, self.dialog.state.disputed,
                                                              self.dialog.state.third_party)

    async def _watch(self) -> None:
        while not self.dialog.done:
            await asyncio.sleep(TICK_S)
            lines = self.dialog.tick()
            quiet_since = max(self.playout.last_audio_mono, self.converse.last_heard_mono)
            quiet_s = (time.monotonic() - quiet_since) * self.playout.speed
            if not lines and not self.playout.speaking and quiet_s > SILENCE_S:
                self.converse.last_heard_mono = time.monotonic()
                lines = self.dialog.silence()
            self._say(lines)


def outcome_data(dialog: Dialog) -> dict[str, Any]:
    """The dialog's outcome as audit data: what was agreed, never who the customer is."""
    outcome = dialog.outcome or Outcome(kind="hung_up")
    return {"kind": outcome.kind, "script": dialog.script.id, "transferred": outcome.transferred,
            "notes": list(outcome.notes),
            "promise_date": outcome.promise_date.isoformat() if outcome.promise_date else None,
            "promise_amount": str(outcome.promise_amount) if outcome.promise_amount is not None else None,
            "callback_at": outcome.callback_at.isoformat() if outcome.callback_at else None}


@functools.cache
def load_kit(config: Config) -> BotKit:
    """The NLU model and the prompts, from the project's models and data folders; loaded once per process."""
    from voicebot.nlu.classify import IntentClassifier

    try:
        classifier = IntentClassifier.load(config.models_dir)
    except FileNotFoundError as e:
        raise BotSetupError(str(e)) from e
    return BotKit(classify=classifier.classify, prompts=build_prompts(config.data_dir))


ACCOUNT_PARAMS = ("name", "id_last4", "amount", "due_date", "lender", "days_overdue")


def account_from(params: Mapping[str, str], zones: tuple[str, ...]) -> Account:
    """The debt a bot stream is about, from the stream's parameters, each checked and bounded as an imported
    account's field is (the error names the bad field, never its value)."""
    from voicebot.campaigns.importer import FIELD_PARSERS  # campaigns import the bot: here, not at the top

    values = {}
    for name in ACCOUNT_PARAMS:
        if name not in params:
            raise BotSetupError(f"bot stream lacks the parameter {name}")
        try:
            values[name] = FIELD_PARSERS[name](str(params[name]))
        except ValueError:
            raise BotSetupError(f"bot stream has an unusable {name} parameter") from None
    try:
        return Account(zones=zones, **values)
    except (ValueError, ArithmeticError, AccountError) as e:
        raise BotSetupError(f"bot stream has an unusable account parameter ({type(e).__name__})") from None


def call_clock(info: CallInfo) -> Callable[[], datetime]:
    """The time as the call tells it: its start (the adapter's clock, pinned in tests) plus the time since."""
    started = time.monotonic()
    return lambda: info.started_at + timedelta(seconds=time.monotonic() - started)


async def start_bot_call(config: Config, engines: Engines, board: CallBoard, info: CallInfo,
                         params: Mapping[str, str], outlet: Outlet) -> BotCall:
    """A bot call about the debt `params` names, on the script it names (a strategy's choice) or else the one for
    its stage and language, not yet started."""
    kit = await asyncio.get_running_loop().run_in_executor(None, load_kit, config)
    account = account_from(params, info.zones)
    language = info.language or params.get("language") or engines.rules.pack.language
    try:
        script = bundled_script(params["script"]) if params.get("script") else select_script(account.days_overdue,
                                                                                              language)
        engines.for_language(script.language)
        company = params.get("company", DEFAULT_COMPANY[script.language])
        caller = Caller(company=company, agent_id=info.agent_id or "bot")
        dialog = Dialog(script, account, caller=caller, now=call_clock(info), max_call_s=MAX_CALL_S)
    except LanguageNotServed as e:
        raise BotSetupError(str(e)) from None
    except (ScriptError, AccountError, KeyError) as e:
        raise BotSetupError(f"no usable script for this account ({type(e).__name__})") from None
    info = dataclasses.replace(info, language=script.language)  # heard and judged in the script's language
    return BotCall(info, engines, kit, dialog, outlet, board)
