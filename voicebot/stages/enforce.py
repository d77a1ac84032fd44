"""Enforce: carry out audited actions through the call's control (the adapter in-path, the PBX in tap mode)."""

from __future__ import annotations

import logging
from typing import Protocol

from voicebot.frames import ActionFrame, Frame, Leg
from voicebot.pipeline import Processor

log = logging.getLogger(__name__)


class CallControl(Protocol):
    """What an adapter can do to its call."""

    warn_heard_by: Leg | None
    """Who hears `warn`'s tone on this adapter (None: nobody, the console alone shows it)."""

    async def hangup(self, reason: str) -> None:
        """End the call on the wire (SIP BYE, AudioSocket hang-up frame, closing the stream)."""

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Stop (or resume) passing the leg's audio to the other party."""

    async def warn(self, leg: Leg | None) -> None:
        """Let the leg's speaker hear a warning tone, where the adapter can send audio."""


class Enforce(Processor):
    """ActionFrame → the adapter's hangup / mute / warn; every frame goes on after."""

    def __init__(self, control: CallControl) -> None:
        super().__init__()
        self.control = control

    async def process(self, frame: Frame) -> None:
        """Act on ActionFrames; adapters ignore actions on a call that has already ended."""
        if isinstance(frame, ActionFrame):
            log.info("enforcing %s on leg %s (actor type %s)", frame.action, frame.leg,
                     "engine" if frame.actor in ("engine", "clock", "fail-safe") else "user")
            if frame.action == "hangup":
                await self.control.hangup(frame.reason)
            elif frame.action in ("mute", "unmute"):
                await self.control.mute(frame.leg or "agent", frame.action == "mute")
            elif frame.action == "warn":
                await self.control.warn(frame.leg)
        await self.push(frame)
