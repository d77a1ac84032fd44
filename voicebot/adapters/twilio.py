"""Twilio Media Streams adapter (placeholder until the adapter lands)."""

from __future__ import annotations

from aiohttp import web


async def media_stream(request: web.Request) -> web.StreamResponse:
    """The Media Streams WebSocket endpoint."""
    raise web.HTTPNotImplemented()
