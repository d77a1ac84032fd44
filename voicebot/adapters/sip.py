"""SIP/RTP adapter on baresip-python (placeholder until the adapter lands)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web


async def sip_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the SIP user agent for the app's lifetime when `sip_listen` is set."""
    yield
