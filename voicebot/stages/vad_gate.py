"""VadGate: only speech (with pre-roll and hangover) goes on to the recognizer."""

from __future__ import annotations

from asr.vad import SpeechChunk, VoiceGate
from voicebot.frames import AudioFrame, EndFrame, Frame, Leg, SpeechEndFrame, SpeechFrame
from voicebot.pipeline import Processor


class VadGate(Processor):
    """AudioFrame → SpeechFrame while someone speaks, SpeechEndFrame when they pause."""

    def __init__(self, leg: Leg) -> None:
        super().__init__()
        self.leg = leg
        self._gate: VoiceGate | None = None

    async def process(self, frame: Frame) -> None:
        """Gate audio; flush the gate at the end of the leg."""
        if isinstance(frame, AudioFrame):
            if self._gate is None:
                self._gate = VoiceGate(frame.sample_rate)
            await self._emit(self._gate.accept(frame.pcm))
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
            else:
                await self.push(SpeechEndFrame(leg=self.leg))
