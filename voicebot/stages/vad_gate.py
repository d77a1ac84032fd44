"""VadGate: only speech (with pre-roll and hangover) goes on to the recognizer."""

from __future__ import annotations

import time
from collections.abc import Callable

from asr.vad import SpeechChunk, SpeechPause, VoiceGate
from voicebot.frames import (
    AudioFrame,
    BargeInFrame,
    EndFrame,
    Frame,
    Leg,
    SpeechEndFrame,
    SpeechFrame,
    SpeechPauseFrame,
)
from voicebot.pipeline import Processor


class VadGate(Processor):
    """AudioFrame → SpeechFrame while someone speaks, SpeechEndFrame when they pause.

    On a bot call, speech that starts while the bot is speaking is announced first with a BargeInFrame, and a
    short pause (`pause_ms`) with a SpeechPauseFrame, so a complete reply can be answered before the full hangover;
    speech that resumes after such a pause while the bot answers is a barge-in too.
    """

    def __init__(self, leg: Leg, bot_speaking: Callable[[], bool] | None = None, pause_ms: int | None = None) -> None:
        super().__init__()
        self.leg = leg
        self.bot_speaking = bot_speaking
        self.pause_ms = pause_ms
        self._gate: VoiceGate | None = None

    async def process(self, frame: Frame) -> None:
        """Gate audio; flush the gate at the end of the leg."""
        if isinstance(frame, AudioFrame):
            if self._gate is None:
                self._gate = VoiceGate(frame.sample_rate, pause_ms=self.pause_ms)
            was_speaking = self._gate.speaking
            events = self._gate.accept(frame.pcm)
            if not was_speaking and self._gate.speaking and self.bot_speaking is not None and self.bot_speaking():
                await self.push(BargeInFrame(leg=self.leg, detected_wall_s=time.monotonic()))
            await self._emit(events)
            return
        if isinstance(frame, EndFrame) and self._gate is not None:
            await self._emit(self._gate.finish())
        await self.push(frame)

    async def _emit(self, events: list) -> None:
        assert self._gate is not None
        for event in events:
            if isinstance(event, SpeechChunk):
                await self.push(SpeechFrame(leg=self.leg, pcm=event.pcm, sample_rate=self._gate.sample_rate,
                                            start_s=event.start_s))
            elif isinstance(event, SpeechPause):
                await self.push(SpeechPauseFrame(leg=self.leg))
            else:
                await self.push(SpeechEndFrame(leg=self.leg))
