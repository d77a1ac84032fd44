"""Tap mode: we hear a forked copy of the call, so actions become signed requests to the PBX's webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from voicebot.frames import Leg

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Voicebot-Signature"
TIMEOUT_S = 2.0


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of a request body, as the PBX should recompute it."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PbxWebhook:
    """POSTs `{"call_id", "action", "leg", "reason", "at"}` to the PBX, signed with the deployment's secret."""

    def __init__(self, url: str, secret: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.secret = secret
        self.session = session

    async def ask(self, call_id: str, action: str, leg: Leg | None, reason: str) -> int | None:
        """Ask the PBX to act; returns its HTTP status, or None when it could not be reached in time."""
        body = json.dumps({"call_id": call_id, "action": action, "leg": leg, "reason": reason,
                           "at": datetime.now(UTC).isoformat()}).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        try:
            async with self.session.post(self.url, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as response:
                return response.status
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("pbx webhook unreachable for call %s (%s)", call_id, type(e).__name__)
            return None


class PbxControl:
    """A tapped call's control: every action is a request to the PBX; without a webhook, only the alert stands."""

    def __init__(self, webhook: PbxWebhook | None, call_id: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self.webhook = webhook
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
        if self.webhook is None:
            return
        status = await self.webhook.ask(self.call_id, action, leg, reason)
        if status is None or not 200 <= status < 300:
            self.emit({"type": "error", "stage": "pbx", "error": f"PBX did not accept {action} ({status})",
                       "fatal": False})
