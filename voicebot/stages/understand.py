"""Understand: the NLU reads each final customer transcript of a bot call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import date

from voicebot.frames import Frame, IntentFrame, SpeechEndFrame, TranscriptFrame
from voicebot.nlu import Understanding
from voicebot.pipeline import Processor


class Understand(Processor):
    """The customer's finals of one turn (until they pause) → one IntentFrame for the whole turn."""

    def __init__(self, classify: Callable[[str, date], Understanding], today: Callable[[], date],
                 executor: Executor) -> None:
        super().__init__()
        self.classify = classify
        self.today = today
        self.executor = executor
        self._turn: list[str] = []

    async def process(self, frame: Frame) -> None:
        """Collect the customer's finals; classify them when the customer pauses; pass everything on."""
        await self.push(frame)
        if isinstance(frame, TranscriptFrame) and frame.final and frame.leg == "customer":
            self._turn.append(frame.text)
        elif isinstance(frame, SpeechEndFrame) and frame.leg == "customer" and self._turn:
            text, self._turn = "".join(self._turn), []
            loop = asyncio.get_running_loop()
            understanding = await loop.run_in_executor(self.executor, self.classify, text, self.today())
            await self.push(IntentFrame(leg=frame.leg, understanding=understanding))
