"""Understand: the NLU reads each final customer transcript of a bot call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import date

from voicebot.frames import Frame, IntentFrame, TranscriptFrame
from voicebot.nlu import Understanding
from voicebot.pipeline import Processor


class Understand(Processor):
    """Final customer TranscriptFrame → the transcript, then an IntentFrame."""

    def __init__(self, classify: Callable[[str, date], Understanding], today: Callable[[], date],
                 executor: Executor) -> None:
        super().__init__()
        self.classify = classify
        self.today = today
        self.executor = executor

    async def process(self, frame: Frame) -> None:
        """Classify finals of the customer leg; pass everything on."""
        await self.push(frame)
        if isinstance(frame, TranscriptFrame) and frame.final and frame.leg == "customer":
            loop = asyncio.get_running_loop()
            understanding = await loop.run_in_executor(self.executor, self.classify, frame.text, self.today())
            await self.push(IntentFrame(leg=frame.leg, understanding=understanding))
