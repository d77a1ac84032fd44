"""Speak: the bot's lines become audio in the playout; customer speech over the bot cuts it off (barge-in)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from voicebot.frames import BargeInFrame, BotSayFrame, Frame, TranscriptFrame
from voicebot.pipeline import Processor
from voicebot.playout import Playout


class Speak(Processor):
    """BotSayFrame → synthesised 8 kHz audio queued for playout, and the line as the bot leg's transcript."""

    def __init__(self, synthesize: Callable[[BotSayFrame], np.ndarray], playout: Playout, executor: Executor,
                 call_time_s: Callable[[], float]) -> None:
        super().__init__()
        self.synthesize = synthesize
        self.playout = playout
        self.executor = executor
        self.call_time_s = call_time_s
        self.said: list[dict] = []
        """Each line started, with its call times: {start_s, end_s, text}."""
        self.barge_in_ms: list[float] = []
        """Delay from the customer's speech onset being detected to the bot's audio being dropped."""

    async def process(self, frame: Frame) -> None:
        """Speak lines, stop on barge-in, pass everything on."""
        if isinstance(frame, BargeInFrame):
            await self.playout.barge_in()
            self.barge_in_ms.append((time.monotonic() - frame.detected_wall_s) * 1000)
        elif isinstance(frame, BotSayFrame):
            pcm = await asyncio.get_running_loop().run_in_executor(self.executor, self.synthesize, frame)
            ahead_s = self.playout.play(pcm, line_id=frame.line_id, end_call=frame.end_call, transfer=frame.transfer)
            start_s = self.call_time_s() + ahead_s
            end_s = start_s + len(pcm) / 8000
            self.said.append({"start_s": round(start_s, 2), "end_s": round(end_s, 2), "text": frame.text})
            await self.push(frame)
            await self.push(TranscriptFrame(leg="agent", text=frame.text, final=True, start_s=start_s, end_s=end_s))
            return
        await self.push(frame)
