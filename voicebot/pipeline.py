"""Processors and the pipeline that links them: each leg of a call is one pipeline fed from one queue."""

from __future__ import annotations

import asyncio
import itertools
import logging

from voicebot.frames import EndFrame, ErrorFrame, Frame, SystemFrame

log = logging.getLogger(__name__)


class Processor:
    """One stage: handles the frames it knows, pushes everything on to the next stage."""

    def __init__(self) -> None:
        self._next: Processor | None = None

    def link(self, nxt: Processor) -> None:
        """Send pushed frames to `nxt`."""
        self._next = nxt

    async def process(self, frame: Frame) -> None:
        """Handle one frame; by default pass it on unchanged."""
        await self.push(frame)

    async def push(self, frame: Frame) -> None:
        """Hand a frame to the next stage."""
        if self._next is not None:
            await self._next.process(frame)

    async def stop(self) -> None:
        """Release what the stage holds; called once the leg has ended."""


class Pipeline(Processor):
    """Stages in order, fed from a queue where system frames go before queued data."""

    def __init__(self, processors: list[Processor], *, name: str) -> None:
        super().__init__()
        self.name = name
        self.processors = processors
        for a, b in itertools.pairwise(processors):
            a.link(b)
        self._queue: asyncio.PriorityQueue[tuple[int, int, Frame]] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self.backlog_peak = 0

    def queue(self, frame: Frame) -> None:
        """Enqueue a frame for the leg's task; never blocks."""
        self._queue.put_nowait((0 if isinstance(frame, SystemFrame) else 1, next(self._seq), frame))
        self.backlog_peak = max(self.backlog_peak, self._queue.qsize())

    async def process(self, frame: Frame) -> None:
        """Run one frame through every stage; a failing stage becomes an ErrorFrame, and the leg goes on."""
        try:
            await self.processors[0].process(frame)
        except Exception as e:  # one bad frame must not end supervision of the call
            log.error("%s: %s while handling %s", self.name, type(e).__name__, type(frame).__name__)
            if not isinstance(frame, ErrorFrame):
                await self.process(ErrorFrame(stage=self.name, error=type(e).__name__, fatal=True))

    async def run(self) -> None:
        """Process queued frames until an EndFrame has gone through, then stop every stage."""
        try:
            while True:
                _, _, frame = await self._queue.get()
                await self.process(frame)
                if isinstance(frame, EndFrame):
                    return
        finally:
            for p in self.processors:
                await p.stop()
