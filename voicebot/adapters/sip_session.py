"""One supervised SIP call: the SIP calls carrying its legs, the 20 ms audio pump, the in-path bridge, its control."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

import baresip
import numpy as np
from baresip import AudioNotActive, AudioRestarted, BaresipError, CallState, Event

from voicebot.admission import CallRefused
from voicebot.call import Call, CallBoard, CallInfo, Engines
from voicebot.frames import LEGS, Leg

if TYPE_CHECKING:
    from voicebot.bot import BotCall

log = logging.getLogger(__name__)

PACKET_S = 0.020
BOT_RATE = 8000
READ_MAX_BYTES = 8192
GAP_SLACK_S = 0.2
"""A leg whose RTP has paused this long is padded with silence, as a phone line would carry it."""
WARN_TONE_HZ = 1000
WARN_TONE_S = 0.3


def silence_due(fed_samples: int, elapsed_s: float, rate: int, slack_s: float = GAP_SLACK_S) -> int:
    """Samples of silence to add so a leg's audio clock trails the wall clock by at most `slack_s`."""
    return max(0, int((elapsed_s - slack_s) * rate) - fed_samples)


def end_reason(close_text: str | None) -> str:
    """The call_end reason for a SIP call the far end or the network closed."""
    return "rtp timeout" if close_text and "rtp" in close_text.lower() else "remote hang-up"


@cache
def warning_tone(rate: int) -> bytes:
    """A short 1 kHz beep as 16-bit PCM."""
    t = np.arange(int(rate * WARN_TONE_S)) / rate
    return (np.sin(2 * np.pi * WARN_TONE_HZ * t) * 8000).astype("<i2").tobytes()


def resample(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear resampling of int16 PCM from `src` to `dst` Hz (the same array when the rates match)."""
    if src == dst or not len(pcm):
        return pcm
    n = max(1, round(len(pcm) * dst / src))
    return np.interp(np.arange(n) * src / dst, np.arange(len(pcm)), pcm.astype(np.float64)).astype(np.int16)


def other_leg(leg: Leg) -> Leg:
    """The leg at the other end of the conversation."""
    return "customer" if leg == "agent" else "agent"


async def bye(sip: baresip.Call) -> None:
    """Hang up a SIP call unless it has already closed; a call that vanished meanwhile is no error."""
    if sip.state is not CallState.CLOSED:
        with contextlib.suppress(BaresipError):
            await sip.hangup()


@dataclass(slots=True)
class _LegClock:
    rate: int = 0
    t0: float | None = None
    fed: int = 0


class SipSession:
    """One supervised Call and the SIP calls carrying its legs; it is the Call's CallControl.

    Bridged (in-path B2BUA): each leg's audio is passed on to the other leg. Grouped (a fork): the call lasts
    until every SIP call of the group has closed; otherwise the first close ends it.
    """

    warn_heard_by: Leg | None = "agent"

    def __init__(self, info: CallInfo, engines: Engines, board: CallBoard, *, bridged: bool = False,
                 grouped: bool = False, clock: Callable[[], datetime] | None = None) -> None:
        self.bridged, self.grouped = bridged, grouped
        self.sip: dict[Leg, baresip.Call] = {}
        self.call = Call(info, engines, self, board, now=clock)
        self.hangup_reason: str | None = None
        self.close_text: str | None = None
        self.ending = False
        self._forced: str | None = None
        self._over = asyncio.Event()
        self._clocks = {leg: _LegClock() for leg in LEGS}
        self._quiet_until: dict[Leg, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.bot: BotCall | None = None

    def use_bot(self, bot: BotCall) -> None:
        """Supervise the bot's call instead: this session is its Outlet, the bot speaks on the customer leg."""
        self.bot, self.call = bot, bot.call

    def attach(self, leg: Leg, sip: baresip.Call) -> None:
        """Carry `leg` on this SIP call: its audio, DTMF and close."""
        self.sip[leg] = sip
        sip.on(lambda event: self._on_event(leg, event))
        sip.on_dtmf(lambda pressed: self._on_digit(leg, pressed.digit))
        if sip.state is CallState.CLOSED:
            self._closed(leg, None)

    async def run(self) -> None:
        """Start the Call, pump audio every 20 ms until the call is over, then BYE what is left and end it."""
        try:
            try:
                await (self.bot.start() if self.bot is not None else self.call.start())
            except CallRefused:  # another adapter took the last slot since the INVITE was admitted
                self._forced = "refused: at capacity"
                return
            log.info("sip call %s: started, legs %s, mode %s%s", self.call.call_id, ",".join(self.sip),
                     self.call.info.mode, ", bridged" if self.bridged else "")
            await self._pump()
        finally:
            self.ending = True
            for sip in self.sip.values():
                await bye(sip)
            reason = self._forced or (f"hangup: {self.hangup_reason}" if self.hangup_reason is not None
                                      else end_reason(self.close_text))
            await (self.bot.end(reason) if self.bot is not None else self.call.end(reason))
            log.info("sip call %s: ended (%s)", self.call.call_id, reason.split(":")[0])

    def stop(self, reason: str) -> None:
        """End the call from outside (server shutdown, a dead SIP stack) with `reason`."""
        self._forced = self._forced or reason
        self._over.set()

    # CallControl -----------------------------------------------------------------------------------

    async def hangup(self, reason: str) -> None:
        """Send BYE on every leg; the session's task then ends the Call."""
        if self.hangup_reason is None and not self._over.is_set():
            self.hangup_reason = reason
        for sip in list(self.sip.values()):
            await bye(sip)
        self._over.set()

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Pass silence instead of the leg's audio to the other party (bridged calls); note the state."""
        self.call.mark_muted(leg, muted)

    async def warn(self, leg: Leg | None) -> None:
        """Play a short beep to the leg's speaker (the agent when no leg is named)."""
        leg = leg or "agent"
        sip = self.sip.get(leg)
        if sip is None or sip.state is not CallState.ESTABLISHED:
            return
        # no flush_tx(): the stack applies it on its next tick, which would drop the beep too; bridged audio
        # queued ahead of it is at most a packet or two, and the bridge holds back while the beep plays
        with contextlib.suppress(BaresipError):
            sip.audio.write(warning_tone(sip.audio.info().tx_sample_rate or 8000))
            self._quiet_until[leg] = time.monotonic() + WARN_TONE_S

    # Outlet (bot calls) ----------------------------------------------------------------------------

    async def send(self, pcm: np.ndarray) -> None:
        """Write 20 ms of the bot's 8 kHz audio to the customer's RTP (resampled to the call's rate)."""
        sip = self.sip.get("customer")
        if sip is None or sip.state is not CallState.ESTABLISHED:
            return
        with contextlib.suppress(AudioNotActive, AudioRestarted):
            rate = sip.audio.info().tx_sample_rate or BOT_RATE
            sip.audio.write(resample(pcm, BOT_RATE, rate).astype("<i2").tobytes())

    async def clear(self) -> None:
        """Barge-in: drop the bot's audio queued for RTP."""
        sip = self.sip.get("customer")
        if sip is not None and sip.state is CallState.ESTABLISHED:
            with contextlib.suppress(AudioNotActive, AudioRestarted):
                sip.audio.flush_tx()

    # events ----------------------------------------------------------------------------------------

    def _on_event(self, leg: Leg, event: baresip.StackEvent) -> None:
        if event.event is Event.CALL_CLOSED:
            self._closed(leg, event.text)

    def _closed(self, leg: Leg, text: str | None) -> None:
        self.close_text = self.close_text or text
        log.info("sip call %s: %s leg closed", self.call.call_id, leg)
        if not self.grouped or all(s.state is CallState.CLOSED for s in self.sip.values()):
            self._over.set()

    def _on_digit(self, leg: Leg, digit: str) -> None:
        self.call.press(leg, digit)
        self.call.emit({"type": "dtmf", "leg": leg})
        other = self.sip.get(other_leg(leg))
        if self.bridged and other is not None and other.state is CallState.ESTABLISHED:
            task = asyncio.create_task(self._relay_digit(other, digit))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _relay_digit(sip: baresip.Call, digit: str) -> None:
        with contextlib.suppress(BaresipError, ValueError):
            await sip.send_dtmf(digit)

    # audio -----------------------------------------------------------------------------------------

    async def _pump(self) -> None:
        due = time.monotonic()
        while not self._over.is_set():
            now = time.monotonic()
            for leg, sip in list(self.sip.items()):
                pcm = self._take(leg, sip, now)
                if pcm:
                    self.call.feed(leg, pcm, "pcm16", self._clocks[leg].rate)
                    if self.bridged:
                        self._pass(other_leg(leg), leg, pcm, now)
            due = max(due + PACKET_S, now - 5 * PACKET_S)
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    def _take(self, leg: Leg, sip: baresip.Call, now: float) -> bytes:
        """The leg's audio (8 kHz PCM16, as baresip decoded it) since the last tick, padded over RTP gaps."""
        clock = self._clocks[leg]
        if sip.state is CallState.CLOSED:
            return b""
        try:
            if not clock.rate:
                info = sip.audio.info()
                if not info.rx_ready or not info.rx_sample_rate:
                    return b""
                clock.rate = info.rx_sample_rate
            data = sip.audio.read(READ_MAX_BYTES)
        except (AudioNotActive, AudioRestarted):
            data = b""
        if data and clock.t0 is None:
            clock.t0 = now - len(data) / 2 / clock.rate
        if clock.t0 is None:
            return b""
        clock.fed += len(data) // 2
        gap = silence_due(clock.fed, now - clock.t0, clock.rate)
        clock.fed += gap
        return data + bytes(2 * gap)

    def _pass(self, dest: Leg, src: Leg, pcm: bytes, now: float) -> None:
        """Bridge: send `src`'s audio on to `dest` (silence while `src` is muted; nothing while `dest` is beeped)."""
        sip = self.sip.get(dest)
        if sip is None or sip.state is not CallState.ESTABLISHED or now < self._quiet_until.get(dest, 0.0):
            return
        with contextlib.suppress(AudioNotActive, AudioRestarted):
            sip.audio.write(bytes(len(pcm)) if src in self.call.muted else pcm)
