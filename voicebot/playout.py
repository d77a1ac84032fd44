"""Paced playout of the bot's audio: 20 ms frames to the adapter in real time, cleared at once on barge-in."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

FRAME_MS = 20
SAMPLE_RATE = 8000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class Played:
    """A line that finished playing, or was cut off by barge-in."""

    line_id: str
    end_call: bool
    transfer: bool
    interrupted: bool


class Playout:
    """Sends the bot's lines frame by frame; what is sent (or silence) is also recorded as the bot's leg."""

    def __init__(self, send: Callable[[np.ndarray], Awaitable[None]], record: Callable[[np.ndarray], None],
                 clear: Callable[[], Awaitable[None]], done: Callable[[Played], Awaitable[None]],
                 *, speed: float = 1.0) -> None:
        self._send, self._record, self._clear, self._done = send, record, clear, done
        self.speed = speed
        """1 on real calls; a simulated call may run faster."""
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._lines: collections.deque[tuple[int, Played]] = collections.deque()
        self._queued = 0
        self._sent = 0
        self.last_audio_mono = time.monotonic()
        """When the bot last sent speech: silence is measured from here."""

    @property
    def speaking(self) -> bool:
        """Whether any of the bot's audio is waiting or playing."""
        return bool(self._frames)

    def play(self, pcm: np.ndarray, *, line_id: str, end_call: bool = False, transfer: bool = False) -> float:
        """Queue one line of 8 kHz audio after whatever is already queued; returns seconds until it starts."""
        ahead_s = len(self._frames) * FRAME_MS / 1000
        pcm = np.asarray(pcm, dtype=np.int16)
        pad = (-len(pcm)) % FRAME_SAMPLES
        pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
        self._frames.extend(pcm.reshape(-1, FRAME_SAMPLES))
        self._queued += len(pcm) // FRAME_SAMPLES
        self._lines.append((self._queued, Played(line_id, end_call, transfer, interrupted=False)))
        return ahead_s

    async def barge_in(self) -> int:
        """Drop every queued frame and tell the adapter to drop what it buffered; returns frames dropped."""
        dropped = len(self._frames)
        self._frames.clear()
        self._sent = self._queued
        await self._clear()
        while self._lines:
            _, line = self._lines.popleft()
            await self._done(Played(line.line_id, line.end_call, line.transfer, interrupted=True))
        return dropped

    async def run(self) -> None:
        """Send one frame every 20 ms of wall time (divided by the speed) until cancelled."""
        t0 = time.monotonic()
        for n in itertools.count():
            frame = self._frames.popleft() if self._frames else None
            if frame is not None:
                self._sent += 1
                self.last_audio_mono = time.monotonic()
                await self._send(frame)
            self._record(SILENCE if frame is None else frame)
            while self._lines and self._lines[0][0] <= self._sent:
                await self._done(self._lines.popleft()[1])
            await asyncio.sleep(max(0.0, t0 + (n + 1) * FRAME_MS / 1000 / self.speed - time.monotonic()))

