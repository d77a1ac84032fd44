"""Understand: the NLU reads each customer turn of a bot call, ending it early when what was said is complete."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import date

from asr.vosk_engine import join_words
from voicebot.frames import Frame, IntentFrame, SpeechEndFrame, SpeechPauseFrame, TranscriptFrame
from voicebot.nlu import Understanding
from voicebot.pipeline import Processor

COMPLETE_CONFIDENCE = 0.8
"""At a short pause the turn ends only if the NLU is at least this sure of a reply other than `other`."""
COMPLETE_MIN_WORDS = 3
"""...and only if the reply has this many Chinese characters or other words: "对", "是", "yes", "I can't" are as
often the start of more (blind set turns30: every harmful early end was one or two words)."""
WORD = re.compile(r"[\u4e00-\u9fff]|[a-zA-Z0-9]+(?:'[a-zA-Z]+)?")


def complete_reply(heard: Understanding) -> bool:
    """Whether a reply heard so far can be answered at a short pause: a confident intent with what it needs
    (a promise its date and amount, a callback its time); otherwise the bot waits for the full pause."""
    if heard.intent == "other" or heard.confidence < COMPLETE_CONFIDENCE:
        return False
    if len(WORD.findall(heard.text)) < COMPLETE_MIN_WORDS:
        return False
    if heard.intent == "promise_to_pay":
        return heard.slots.date is not None and heard.slots.amount is not None
    if heard.intent == "callback":
        return heard.slots.date is not None
    return True


class Understand(Processor):
    """The customer's finals of one turn → one IntentFrame for the whole turn, at a short pause if the turn is
    complete, else when the customer stops (the VAD's full hangover)."""

    def __init__(self, classify: Callable[[str, date], Understanding], today: Callable[[], date],
                 executor: Executor) -> None:
        super().__init__()
        self.classify = classify
        self.today = today
        self.executor = executor
        self._turn: list[str] = []
        self._heard: Understanding | None = None

    async def process(self, frame: Frame) -> None:
        """Collect the customer's finals; classify them when the customer pauses; pass everything on."""
        await self.push(frame)
        if isinstance(frame, TranscriptFrame) and frame.final and frame.leg == "customer":
            self._turn.append(frame.text)
        elif isinstance(frame, SpeechPauseFrame | SpeechEndFrame) and frame.leg == "customer" and self._turn:
            text = join_words(self._turn)
            if self._heard is None or self._heard.text != text:  # a pause's reading is kept if nothing followed
                loop = asyncio.get_running_loop()
                self._heard = await loop.run_in_executor(self.executor, self.classify, text, self.today())
            if isinstance(frame, SpeechEndFrame) or complete_reply(self._heard):
                await self.push(IntentFrame(leg=frame.leg, understanding=self._heard))
                self._turn, self._heard = [], None
