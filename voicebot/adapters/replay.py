"""File replay: a stereo (or two-file) recording played as a live call, in real time or faster."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from asr.codecs import Audio, AudioFormatError, check_stream_rate, read_audio_file, resample
from voicebot.bot import BotCall, start_bot_call
from voicebot.call import Call, CallBoard, CallInfo, Engines
from voicebot.config import Config
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

    warn_heard_by: Leg | None = None

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


class SimulatedDebtor:
    """The debtor's side of a bot call played from recordings: each of the bot's questions gets a scripted answer
    (speech from a file, or keyed digits) once the bot has been quiet a moment; silence otherwise."""

    warn_heard_by: Leg | None = None

    def __init__(self, replies: dict[str, Audio | str], *, speed: float = 1.0, pause_s: float = 0.8) -> None:
        self.replies = replies
        self.speed = speed
        self.pause_s = pause_s
        self.hung_up = asyncio.Event()
        self.hangup_reason = ""
        self._bot_audio_mono = time.monotonic()
        self._asked: str | None = None
        self._speech: list[np.ndarray] = []

    async def send(self, pcm: np.ndarray) -> None:
        """The bot's audio reaches the debtor."""
        self._bot_audio_mono = time.monotonic()

    async def clear(self) -> None:
        """Nothing is buffered on a simulated line."""

    async def hangup(self, reason: str) -> None:
        """The bot (or a supervisor) ends the call."""
        self.hangup_reason = self.hangup_reason or reason
        self.hung_up.set()

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Nothing to silence on a simulated line."""

    async def warn(self, leg: Leg | None) -> None:
        """Nobody to warn on a simulated line."""

    def heard_line(self, line_id: str) -> None:
        """The bot said a line of its script; the debtor will answer it if it has an answer."""
        self._asked = line_id

    async def run(self, call: Call) -> None:
        """Feed the customer leg 20 ms at a time, answering each question once the bot has paused."""
        step = PACKET_MS * 8
        t0 = time.monotonic()
        for i in itertools.count():
            if self.hung_up.is_set():
                return
            quiet_s = (time.monotonic() - self._bot_audio_mono) * self.speed
            if not self._speech and self._asked and quiet_s > self.pause_s:
                reply, self._asked = self.replies.get(self._asked), None
                if isinstance(reply, str):
                    for digit in reply:
                        call.press("customer", digit)
                elif reply is not None:
                    pcm = resample(reply.channels[0], reply.sample_rate, 8000)
                    self._speech = [pcm[j : j + step] for j in range(0, len(pcm), step)]
            chunk = self._speech.pop(0) if self._speech else np.zeros(step, dtype=np.int16)
            call.feed("customer", np.pad(chunk, (0, step - len(chunk))).tobytes(), "pcm16", 8000)
            await asyncio.sleep(max(0.0, t0 + (i + 1) * PACKET_MS / 1000 / self.speed - time.monotonic()))


async def simulate_bot_call(config: Config, engines: Engines, board: CallBoard, info: CallInfo,
                            params: Mapping[str, str], debtor: SimulatedDebtor) -> BotCall:
    """A bot call to a simulated debtor, from the opening to the bot's hang-up; returns once it has ended."""
    bot = await start_bot_call(config, engines, board, info, params, debtor)
    events = board.listen(maxsize=0)
    await bot.start()
    feeding = asyncio.create_task(debtor.run(bot.call))
    try:
        while not debtor.hung_up.is_set():
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(events.get(), 0.5)
                if event["call_id"] == bot.call.call_id and event["type"] == "bot_say":
                    debtor.heard_line(event["line_id"])
    finally:
        board.unlisten(events)
        feeding.cancel()
    await bot.end(f"hangup: {debtor.hangup_reason}")
    return bot


async def follow_replay(audio: Audio, engines: Engines, info: CallInfo, show: Callable[[dict[str, Any]], None]
                        ) -> None:
    """Replay a call and show each of its events as it happens."""
    board = CallBoard()
    events = board.listen(maxsize=0)
    await follow_events(events, asyncio.create_task(replay_call(audio, engines, board, info)), show)


CALL_TASK_DONE: dict[str, Any] = {"type": "call_task_done"}


async def follow_events(events: asyncio.Queue[dict[str, Any]], task: asyncio.Task[Any],
                        show: Callable[[dict[str, Any]], None]) -> None:
    """Show a board's events until the task running the call is done, then raise its error if it failed."""
    task.add_done_callback(lambda _: events.put_nowait(CALL_TASK_DONE))
    while (event := await events.get()) is not CALL_TASK_DONE:
        show(event)
    await task
