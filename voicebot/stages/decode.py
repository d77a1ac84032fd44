"""Decode: adapter packets to 16-bit PCM stamped with call time; a bad packet is counted and dropped."""

from __future__ import annotations

import logging

from asr.codecs import AudioFormatError, check_stream_rate, decode
from voicebot.frames import AudioFrame, Frame, InputAudioFrame
from voicebot.pipeline import Processor

log = logging.getLogger(__name__)


class Decode(Processor):
    """InputAudioFrame → AudioFrame at 8 or 16 kHz, with its start time on the leg's clock."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0
        self.rate: int | None = None
        self.bad_packets = 0

    async def process(self, frame: Frame) -> None:
        """Decode audio packets; pass everything else on."""
        if not isinstance(frame, InputAudioFrame):
            await self.push(frame)
            return
        try:
            rate = check_stream_rate(frame.sample_rate)
            if self.rate not in (None, rate):
                raise AudioFormatError(f"leg changed rate mid-call from {self.rate} to {rate} Hz")
            pcm = decode(frame.payload, frame.encoding)
        except AudioFormatError as e:
            self.bad_packets += 1
            log.warning("%s leg: dropped a bad audio packet of %d bytes (%s)", frame.leg, len(frame.payload),
                        type(e).__name__)
            return
        self.rate = rate
        start_s = self.samples / rate
        self.samples += len(pcm)
        await self.push(AudioFrame(leg=frame.leg, pcm=pcm, sample_rate=rate, start_s=start_s))
