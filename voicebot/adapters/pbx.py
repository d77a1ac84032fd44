"""Tap mode's link to the PBX: actions become signed requests to its webhook (voicebot.tap decides when)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime

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
