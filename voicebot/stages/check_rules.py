"""CheckRules: every transcript goes through the rule engine; a hit the semantic model does not overrule becomes a
violation and, by policy, an action."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

from compliance_rules.engine import CallMonitor, Flag
from voicebot.frames import ActionFrame, Frame, TranscriptFrame, ViolationFrame
from voicebot.pipeline import Processor

PACK_ACTIONS = {"alert": "alert", "warn": "warn", "mute": "mute", "end_call": "hangup"}
"""A pack's action names and the call action each one takes; `log` takes none."""


class CheckRules(Processor):
    """TranscriptFrame → the transcript, then a ViolationFrame and an ActionFrame per new flag that stands.

    The rules run on the event loop (they are cheap); when they flag an agent's line and the call has a model, the
    model reads it on `executor` first and may overrule them (a negation, a fraud warning)."""

    def __init__(self, monitor: CallMonitor, executor: Executor | None = None) -> None:
        super().__init__()
        self.monitor = monitor
        self.executor = executor

    async def process(self, frame: Frame) -> None:
        """Check transcripts; pass everything else on."""
        await self.push(frame)
        if not isinstance(frame, TranscriptFrame):
            return
        flags = self.monitor.check(frame.leg, frame.text, final=frame.final, words=frame.words)
        if self.monitor.may_overrule(flags):
            flags = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.monitor.confirm, frame.leg, frame.text, flags)
        await push_flags(self, self.monitor, flags, frame)


async def push_flags(stage: Processor, monitor: CallMonitor, flags: list[Flag], frame: TranscriptFrame) -> None:
    """A ViolationFrame per flag, each followed by the action its pack calls for: one warning per utterance, however
    many rules or model categories it breaks."""
    for flag in flags:
        now = time.monotonic()
        await stage.push(ViolationFrame(flag=flag, final=frame.final, detected_wall_s=now))
        action = action_for(flag, now, fallback_end_s=frame.end_s)
        if action is not None and (action.action != "warn" or monitor.first_warning(flag.leg)):
            await stage.push(action)


def action_for(flag: Flag, detected_wall_s: float, *, fallback_end_s: float | None = None) -> ActionFrame | None:
    """The action a flag calls for under its pack, or None for `log`."""
    action = PACK_ACTIONS.get(flag.action)
    if action is None:
        return None
    by_model = f", model {flag.model} score {flag.score:.2f}" if flag.source == "model" else ""
    return ActionFrame(
        action=action, leg=flag.leg, actor="engine", rule=flag.rule,
        reason=f"{flag.category} ({flag.severity}{by_model})",
        audio_end_s=flag.end_s if flag.end_s is not None else fallback_end_s, detected_wall_s=detected_wall_s,
    )
