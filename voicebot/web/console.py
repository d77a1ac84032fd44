"""The supervisor console: the live call list, a call's transcript and flags, actions, and the event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from voicebot.call import Call, CallBoard
from voicebot.stages.publish import Event
from voicebot.web.admin import setup_admin
from voicebot.web.auth import ACTION_ROLES, AuthSettings
from voicebot.web.keys import AUTH, BOARD, SESSION, SOCKETS
from voicebot.web.login import (
    WS_CLOSE_SIGNED_OUT,
    ApiError,
    close_sockets,
    origin_ok,
    render,
    require_csrf,
    require_role,
    run_db,
    setup_login,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
CONSOLE_ACTIONS = ("warn", "mute", "unmute", "hangup")
LEGS = ("agent", "customer")
WS_CLOSE_BEHIND = 4409
WS_HEARTBEAT_S = 30.0


def setup_console(app: web.Application, settings: AuthSettings) -> None:
    """Add sign-in, the console pages and APIs, the event stream and the static files to the app."""
    setup_login(app, settings)
    app[SOCKETS] = weakref.WeakKeyDictionary()
    app.on_shutdown.append(_close_all_sockets)
    app.router.add_get("/", console_page)
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_post("/api/calls/{call_id}/actions", post_action)
    app.router.add_get("/ws/events", events_ws)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    setup_admin(app)


async def _close_all_sockets(app: web.Application) -> None:
    await close_sockets(app, None, WSCloseCode.GOING_AWAY, b"server shutdown")


def call_summary(call: Call) -> dict[str, Any]:
    """What the call list shows of a call."""
    info = call.info
    return {"call_id": call.call_id, "adapter": info.adapter, "mode": info.mode,
            "started_at": info.started_at.isoformat(), "agent_id": info.agent_id,
            "flags": sum(1 for e in call.events if e["type"] == "flag" and not e.get("signal")),
            "muted": sorted(call.muted), "ended": call.ended_reason is not None}


def snapshot(board: CallBoard) -> dict[str, Any]:
    """Every live call with its recent events: the first message of an event stream."""
    return {"type": "snapshot", "calls": [{**call_summary(c), "events": list(c.events)} for c in board.calls.values()]}


async def console_page(request: web.Request) -> web.Response:
    """GET /: the console; buttons are drawn only for roles that may act."""
    session = request[SESSION]
    return render("console.html", username=session.username, role=session.role, csrf=session.csrf,
                  can_act="yes" if session.role in ACTION_ROLES else "no")


async def list_calls(request: web.Request) -> web.Response:
    """GET /api/calls: the live calls."""
    return web.json_response({"calls": [call_summary(c) for c in request.app[BOARD].calls.values()]})


def _call(request: web.Request) -> Call:
    call = request.app[BOARD].calls.get(request.match_info["call_id"])
    if call is None:
        raise ApiError(404, "no live call with this id")
    return call


async def get_call(request: web.Request) -> web.Response:
    """GET /api/calls/{id}: one live call with its recent events."""
    call = _call(request)
    return web.json_response({**call_summary(call), "events": list(call.events)}, dumps=_dumps)


def parse_action(body: object) -> tuple[str, str | None]:
    """The (action, leg) of an action request body, or ApiError 400 saying what is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, 'send a JSON object: {"action": "warn"|"mute"|"unmute"|"hangup", "leg": "agent"}')
    action = body.get("action")
    if action not in CONSOLE_ACTIONS:
        raise ApiError(400, f"action must be one of {', '.join(CONSOLE_ACTIONS)}")
    leg = body.get("leg", None if action == "hangup" else "agent")
    if leg is not None and leg not in LEGS:
        raise ApiError(400, "leg must be agent or customer")
    if action in ("mute", "unmute") and leg is None:
        leg = "agent"
    return action, leg


async def post_action(request: web.Request) -> web.Response:
    """POST /api/calls/{id}/actions: a supervisor's warn, mute, unmute or hang-up, audited with their name."""
    session = require_role(require_csrf(request), ACTION_ROLES)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON") from None
    action, leg = parse_action(body)
    call = _call(request)
    if call.ended_reason is not None:
        raise ApiError(409, "the call has already ended")
    call.act(action, actor=session.username, reason="supervisor", leg=leg)  # type: ignore[arg-type]
    log.info("console action %s on call %s leg %s", action, call.call_id, leg)
    return web.json_response({"ok": True, "call_id": call.call_id, "action": action, "leg": leg}, status=202)


async def events_ws(request: web.Request) -> web.StreamResponse:
    """GET /ws/events: a snapshot of live calls, then every event as it happens (same-origin, signed in)."""
    session = request[SESSION]
    if not origin_ok(request, required=True):
        raise ApiError(403, "the event stream is only for the console's own pages")
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S)
    await ws.prepare(request)
    request.app[SOCKETS][ws] = session.token_hash
    board = request.app[BOARD]
    queue = board.listen()
    first = snapshot(board)
    sender = asyncio.create_task(_send_events(request.app, ws, queue, first, session.token_hash))
    try:
        async for _ in ws:
            pass  # the console sends nothing; reading here handles pings and the close handshake
    finally:
        board.unlisten(queue)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


async def _send_events(app: web.Application, ws: web.WebSocketResponse, queue: asyncio.Queue[Event],
                       first: dict[str, Any], token_hash: str) -> None:
    auth = app[AUTH]
    check_s = auth.settings.ws_check_s
    getter: asyncio.Future[Event] | None = None
    try:
        await ws.send_str(_dumps(first))
        checked = time.monotonic()
        while not ws.closed:
            if queue.full():
                await ws.close(code=WS_CLOSE_BEHIND, message=b"fell behind; reconnect")
                return
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=check_s)
            if getter in done:
                await ws.send_str(_dumps(getter.result()))
                getter = None
            if time.monotonic() - checked >= check_s:
                checked = time.monotonic()
                if await run_db(auth.store.session_by_hash, token_hash, auth.settings.idle_timeout_s) is None:
                    await ws.close(code=WS_CLOSE_SIGNED_OUT, message=b"session ended")
                    return
    except (ConnectionError, RuntimeError):
        log.info("event stream closed while sending")
    finally:
        if getter is not None:
            getter.cancel()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
