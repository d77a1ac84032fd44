"""CheckMeaning: the semantic model reads the agent's finals and stable partials, off the event loop; what it
flags becomes a violation and, by its score and the pack, an action or an alert. It reads the customer's finals for
the call state they set (the debtor confirmed, a third party, a dispute)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from compliance_rules.engine import CallMonitor
from voicebot.frames import Frame, TranscriptFrame
from voicebot.pipeline import Processor
from voicebot.stages.check_rules import push_flags

MIN_PARTIAL_CHARS = 4
"""A partial shorter than this is not worth the model's time."""
OVERLAP_CHARS = 16
"""A final whose beginning the model read in a stable partial is read from this many characters before the end of
that partial: the encoder's cost grows with the text, and the final's delay is what enforcement waits on."""


class CheckMeaning(Processor):
    """TranscriptFrame → the transcript, then a ViolationFrame and an ActionFrame per new model flag.

    Runs after CheckRules on the same leg. A partial is read when it is stable (the recognizer gave the same
    text twice in a row) and new; a final always, unless the model already read that exact text, and only from near
    the end of the stable partial it read before."""

    def __init__(self, monitor: CallMonitor, executor: Executor) -> None:
        super().__init__()
        self.monitor = monitor
        self.executor = executor
        self._last_partial = ""
        self._last_read = ""

    async def process(self, frame: Frame) -> None:
        """Read the agent's transcripts and the customer's finals with the model; pass every frame on first."""
        await self.push(frame)
        if not isinstance(frame, TranscriptFrame) or self.monitor.model is None:
            return
        text = self._unread(frame) if frame.leg == "agent" else frame.text if frame.final else ""
        if not text:
            return
        loop = asyncio.get_running_loop()
        flags = await loop.run_in_executor(self.executor, self.monitor.check_meaning, frame.leg, text)
        await push_flags(self, self.monitor, flags, frame)

    def _unread(self, frame: TranscriptFrame) -> str:
        """What the model should read of this result: a stable new partial whole; a final whole, or only its tail
        (with OVERLAP_CHARS of context) when a stable partial of it was read already; "" for nothing."""
        if frame.final:
            read, self._last_read, self._last_partial = self._last_read, "", ""
            if frame.text == read:
                return ""
            keep = max(0, len(read) - OVERLAP_CHARS)
            return frame.text[keep:] if frame.text.startswith(read[:keep]) else frame.text
        stable, self._last_partial = frame.text == self._last_partial, frame.text
        if not stable or frame.text == self._last_read or len(frame.text) < MIN_PARTIAL_CHARS:
            return ""
        self._last_read = frame.text
        return frame.text
