"""CheckMeaning: the semantic model reads the agent's finals and stable partials, off the event loop; what it
flags becomes a violation and, by its score and the pack, an action or an alert."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

from compliance_rules.engine import CallMonitor
from voicebot.frames import Frame, TranscriptFrame, ViolationFrame
from voicebot.pipeline import Processor
from voicebot.stages.check_rules import action_for

MIN_PARTIAL_CHARS = 4
"""A partial shorter than this is not worth the model's time."""


class CheckMeaning(Processor):
    """TranscriptFrame → the transcript, then a ViolationFrame and an ActionFrame per new model flag.

    Runs after CheckRules on the same leg. A partial is read when it is stable (the recognizer gave the same
    text twice in a row) and new; a final always, unless the model already read that exact text."""

    def __init__(self, monitor: CallMonitor, executor: Executor) -> None:
        super().__init__()
        self.monitor = monitor
        self.executor = executor
        self._last_partial = ""
        self._last_read = ""

    async def process(self, frame: Frame) -> None:
        """Read the agent's transcripts with the model; pass every frame on first."""
        await self.push(frame)
        if not isinstance(frame, TranscriptFrame) or frame.leg != "agent" or self.monitor.model is None:
            return
        if not self._wanted(frame):
            return
        self._last_read = frame.text
        loop = asyncio.get_running_loop()
        flags = await loop.run_in_executor(self.executor, self.monitor.check_meaning, frame.leg, frame.text)
        for flag in flags:
            now = time.monotonic()
            await self.push(ViolationFrame(flag=flag, final=frame.final, detected_wall_s=now))
            action = action_for(flag, now, fallback_end_s=frame.end_s)
            if action is not None:
                await self.push(action)

    def _wanted(self, frame: TranscriptFrame) -> bool:
        if frame.final:
            wanted = frame.text != self._last_read
            self._last_partial = self._last_read = ""
            return wanted
        stable = frame.text == self._last_partial
        self._last_partial = frame.text
        return stable and frame.text != self._last_read and len(frame.text) >= MIN_PARTIAL_CHARS
