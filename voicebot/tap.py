"""Tap mode's call control: we hear a forked copy of the call, so each action is a request to the PBX."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from voicebot.frames import Leg


class Pbx(Protocol):
    """Where a tapped call's actions go (the adapters' signed webhook is one)."""

    async def ask(self, call_id: str, action: str, leg: Leg | None, reason: str) -> int | None:
        """Ask the PBX to act; returns its HTTP status, or None when it could not be reached in time."""


class PbxControl:
    """A tapped call's control: every action is a request to the PBX; without one, only the alert stands."""

    warn_heard_by: Leg | None = "agent"

    def __init__(self, pbx: Pbx | None, call_id: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self.pbx = pbx
        self.call_id = call_id
        self.emit = emit

    async def hangup(self, reason: str) -> None:
        """Ask the PBX to end the call."""
        await self._ask("hangup", None, reason)

    async def mute(self, leg: Leg, muted: bool) -> None:
        """Ask the PBX to mute (or unmute) a leg."""
        await self._ask("mute" if muted else "unmute", leg, "")

    async def warn(self, leg: Leg | None) -> None:
        """Ask the PBX to play its warning to a leg."""
        await self._ask("warn", leg, "")

    async def _ask(self, action: str, leg: Leg | None, reason: str) -> None:
        if self.pbx is None:
            return
        status = await self.pbx.ask(self.call_id, action, leg, reason)
        if status is None or not 200 <= status < 300:
            self.emit({"type": "error", "stage": "pbx", "error": f"PBX did not accept {action} ({status})",
                       "fatal": False})
