"""Recognize: streaming Vosk on the gated speech, run off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from asr.vosk_engine import AsrEvent, AsrStream, VoskEngine
from compliance_rules.engine import TimedWord
from voicebot.frames import EndFrame, Frame, Leg, SpeechEndFrame, SpeechFrame, TranscriptFrame
from voicebot.pipeline import Processor


class Recognize(Processor):
    """SpeechFrame → partial TranscriptFrames; SpeechEndFrame or EndFrame → the final one."""

    def __init__(self, leg: Leg, engine: VoskEngine, executor: Executor) -> None:
        super().__init__()
        self.leg = leg
        self.engine = engine
        self.executor = executor
        self._stream: AsrStream | None = None

    async def process(self, frame: Frame) -> None:
        """Recognise speech; pass everything else on."""
        loop = asyncio.get_running_loop()
        if isinstance(frame, SpeechFrame):
            if self._stream is None:
                self._stream = self.engine.stream(frame.sample_rate)
            events = await loop.run_in_executor(self.executor, self._stream.accept, frame.pcm, frame.start_s)
            await self._emit(events)
            return
        if isinstance(frame, SpeechEndFrame | EndFrame) and self._stream is not None:
            await self._emit(await loop.run_in_executor(self.executor, self._stream.finish))
        if not isinstance(frame, SpeechEndFrame):
            await self.push(frame)

    async def _emit(self, events: list[AsrEvent]) -> None:
        for e in events:
            if not e.text:
                continue
            words = tuple(TimedWord(w.word, w.start_s, w.end_s) for w in e.words)
            await self.push(TranscriptFrame(leg=self.leg, text=e.text, final=e.kind == "final",
                                            start_s=e.start_s, end_s=e.end_s, words=words))
