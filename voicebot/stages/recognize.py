"""Recognize: streaming Vosk on the gated speech, run off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from asr.vosk_engine import AsrEvent, AsrStream, VoskEngine
from asr.whisper_engine import WhisperEngine, WhisperStream
from compliance_rules.engine import TimedWord
from voicebot.frames import EndFrame, Frame, Leg, SpeechEndFrame, SpeechFrame, SpeechPauseFrame, TranscriptFrame
from voicebot.pipeline import Processor

BATCH_MS = 100
"""Speech is handed to the recognizer in pieces this long: 20 ms pieces cost more CPU for no earlier result."""


class Recognize(Processor):
    """SpeechFrame → partial TranscriptFrames; a pause, SpeechEndFrame or EndFrame → the final one, then the frame."""

    def __init__(self, leg: Leg, engine: VoskEngine | WhisperEngine, executor: Executor) -> None:
        super().__init__()
        self.leg = leg
        self.engine = engine
        self.executor = executor
        self._stream: AsrStream | WhisperStream | None = None
        self._pending: list[SpeechFrame] = []

    async def process(self, frame: Frame) -> None:
        """Recognise speech; pass everything else on."""
        if isinstance(frame, SpeechFrame):
            self._pending.append(frame)
            if sum(len(f.pcm) for f in self._pending) * 1000 >= BATCH_MS * frame.sample_rate:
                await self._accept()
            return
        if isinstance(frame, SpeechPauseFrame | SpeechEndFrame | EndFrame):
            await self._accept()
            if self._stream is not None:
                await self._emit(await self._run(self._stream.finish))
        await self.push(frame)

    async def stop(self) -> None:
        """Hand the recognizer back for the next call (after any decode of it still running)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(RuntimeError):  # the executor has shut down: the recognizer is just dropped
                await asyncio.get_running_loop().run_in_executor(self.executor, stream.close)

    async def _run(self, fn: Callable[..., list[AsrEvent]], *args: object) -> list[AsrEvent]:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _accept(self) -> None:
        if not self._pending:
            return
        first, pcm = self._pending[0], np.concatenate([f.pcm for f in self._pending])
        self._pending = []
        if self._stream is None:
            self._stream = self.engine.stream(first.sample_rate)
        await self._emit(await self._run(self._stream.accept, pcm, first.start_s))

    async def _emit(self, events: list[AsrEvent]) -> None:
        for e in events:
            if not e.text:
                continue
            words = tuple(TimedWord(w.word, w.start_s, w.end_s) for w in e.words)
            await self.push(TranscriptFrame(leg=self.leg, text=e.text, final=e.kind == "final",
                                            start_s=e.start_s, end_s=e.end_s, words=words))
