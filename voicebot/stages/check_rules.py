"""CheckRules: every transcript goes through the rule engine; a hit becomes a violation and, by policy, an action."""

from __future__ import annotations

import time

from compliance_rules.engine import CallMonitor, Flag
from voicebot.frames import ActionFrame, Frame, TranscriptFrame, ViolationFrame
from voicebot.pipeline import Processor

PACK_ACTIONS = {"alert": "alert", "warn": "warn", "mute": "mute", "end_call": "hangup"}
"""A pack's action names and the call action each one takes; `log` takes none."""


class CheckRules(Processor):
    """TranscriptFrame → the transcript, then a ViolationFrame and an ActionFrame per new flag."""

    def __init__(self, monitor: CallMonitor) -> None:
        super().__init__()
        self.monitor = monitor

    async def process(self, frame: Frame) -> None:
        """Check transcripts; pass everything else on."""
        await self.push(frame)
        if not isinstance(frame, TranscriptFrame):
            return
        for flag in self.monitor.check(frame.leg, frame.text, final=frame.final, words=frame.words):
            now = time.monotonic()
            await self.push(ViolationFrame(flag=flag, final=frame.final, detected_wall_s=now))
            action = action_for(flag, now, fallback_end_s=frame.end_s)
            if action is not None:
                await self.push(action)


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
