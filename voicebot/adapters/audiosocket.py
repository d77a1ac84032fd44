"""Asterisk AudioSocket adapter (placeholder until the adapter lands)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web


async def audiosocket_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the AudioSocket TCP server for the app's lifetime when `audiosocket_port` is set."""
    yield
