"""File replay: a stereo (or two-file) recording played as a live call, in real time or faster."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np

from asr.codecs import Audio, AudioFormatError, check_stream_rate, read_audio_file, resample
from voicebot.call import Call, CallBoard, CallInfo, Engines
from voicebot.frames import LEGS, Leg

log = logging.getLogger(__name__)

PACKET_MS = 20


def load_call_audio(paths: list[Path]) -> Audio:
    """One stereo file, or two mono files (agent, customer), as a two-leg call at 8 or 16 kHz."""
    audios = [read_audio_file(p) for p in paths]
    channels = [c for a in audios for c in a.channels]
    if len(channels) != 2:
        raise AudioFormatError(f"a replayed call needs one stereo file or two mono files, got {len(channels)} "
                               f"channel(s) in {len(paths)} file(s)")
    rate = audios[0].sample_rate
    channels = [resample(c, a.sample_rate, rate) for a in audios for c in a.channels]
    check_stream_rate(rate)
    n = max(len(c) for c in channels)
    return Audio(channels=tuple(np.pad(c, (0, n - len(c))) for c in channels), sample_rate=rate)


class ReplayControl:
    """In-path control of a replayed call: hang-up stops the replay, mute is noted."""

    def __init__(self) -> None:
        self.call: Call | None = None
        self.hung_up = asyncio.Event()
        self.hangup_reason = ""

    async def hangup(self, reason: str) -> None:
        """Stop feeding audio; the replay task then ends the call."""
        self.hangup_reason = self.hangup_reason or reason
        self.hung_up.set()

    async def mute(self, leg: Leg, muted: bool) -> None:
        """A replay has no far end to silence; the mute state is recorded on the call."""
        if self.call is not None:
            self.call.mark_muted(leg, muted)

    async def warn(self, leg: Leg | None) -> None:
        """A replay has no speaker to warn; the console shows the warning."""


async def replay_call(audio: Audio, engines: Engines, board: CallBoard, info: CallInfo) -> Call:
    """Play `audio` through a live call at `info.speed` times real time; returns once the call has ended."""
    control = ReplayControl()
    call = Call(info, engines, control, board)
    control.call = call
    await call.start()
    step = audio.sample_rate * PACKET_MS // 1000
    total = len(audio.channels[0])
    t0 = time.monotonic()
    for i, offset in enumerate(range(0, total, step)):
        if control.hung_up.is_set():
            break
        for leg, pcm in zip(LEGS, audio.channels, strict=True):
            call.feed(leg, pcm[offset : offset + step].tobytes(), "pcm16", audio.sample_rate)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * PACKET_MS / 1000 / info.speed - time.monotonic()))
    await call.end(f"hangup: {control.hangup_reason}" if control.hung_up.is_set() else "completed")
    return call
