"""The supervisor console: the live call list, a call's transcript and flags, actions, and the event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import WSCloseCode, web

from voicebot.board import CallBoard
from voicebot.cluster import ClusterUnavailableError
from voicebot.stages.publish import Event
from voicebot.web.admin import setup_admin
from voicebot.web.auth import ACTION_ROLES, AuthSettings
from voicebot.web.collection import setup_collection
from voicebot.web.keys import AUTH, BOARD, CLUSTER, ENGINES, SESSION, SOCKETS
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
from voicebot.web.prefs import page_settings, setup_prefs
from voicebot.web.tasks import setup_tasks

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
CONSOLE_ACTIONS = ("warn", "mute", "unmute", "hangup")
LEGS = ("agent", "customer")
WS_CLOSE_BEHIND = 4409
WS_HEARTBEAT_S = 30.0
TITLES = {"en": "Live calls · voicebot console", "zh": "实时通话 · 语音机器人控制台"}


def setup_console(app: web.Application, settings: AuthSettings) -> None:
    """Add sign-in, the console pages and APIs, the event stream and the static files to the app."""
    setup_login(app, settings)
    app[SOCKETS] = weakref.WeakKeyDictionary()
    app.on_shutdown.append(_close_all_sockets)
    app.router.add_get("/", console_page)
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_post("/api/calls/{call_id}/actions", post_action)
    app.router.add_get("/api/pack", get_pack)
    app.router.add_get("/api/alerts", list_alerts)
    app.router.add_post("/api/alerts/{alert_id}/ack", ack_alert)
    app.router.add_get("/ws/events", events_ws)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    setup_admin(app)
    setup_prefs(app)
    setup_tasks(app)
    setup_collection(app)


async def _close_all_sockets(app: web.Application) -> None:
    await close_sockets(app, None, WSCloseCode.GOING_AWAY, b"server shutdown")


def snapshot(board: CallBoard) -> dict[str, Any]:
    """Every live call and today's ended ones with their events, and the day's alerts: an event stream's first
    message."""
    return {"type": "snapshot", "calls": board.summaries(), "alerts": list(board.alerts.values())}


async def console_page(request: web.Request) -> web.Response:
    """GET /: the console in the user's language; buttons are drawn only for roles that may act."""
    session = request[SESSION]
    page = await page_settings(request)
    return render("console.html", username=session.username, role=session.role, csrf=session.csrf,
                  can_act="yes" if session.role in ACTION_ROLES else "no", lang=page.lang, zone=page.zone,
                  title=TITLES[page.lang], header=page.header)


async def list_calls(request: web.Request) -> web.Response:
    """GET /api/calls: the live calls and those that ended today, without their events."""
    calls = [{k: v for k, v in c.items() if k != "events"} for c in request.app[BOARD].summaries()]
    return web.json_response({"calls": calls})


async def get_call(request: web.Request) -> web.Response:
    """GET /api/calls/{id}: one live or ended call with its events."""
    call = request.app[BOARD].call(request.match_info["call_id"])
    if call is None:
        raise ApiError(404, "no call with this id today")
    return web.json_response(call, dumps=_dumps)


async def get_pack(request: web.Request) -> web.Response:
    """GET /api/pack: what the console calls the pack's rules and categories, and the zones it assumes for a call
    whose debtor's zone is unknown."""
    pack = request.app[ENGINES].rules.pack
    return web.json_response({"categories": pack.categories,
                              "rules": {r.id: r.description for r in pack.rules if r.description},
                              "fallback_zones": list(pack.window.fallback_zones)}, dumps=_dumps)


async def list_alerts(request: web.Request) -> web.Response:
    """GET /api/alerts: the day's alerts, newest first."""
    return web.json_response({"alerts": list(reversed(request.app[BOARD].alerts.values()))}, dumps=_dumps)


async def ack_alert(request: web.Request) -> web.Response:
    """POST /api/alerts/{id}/ack: a supervisor acknowledges an alert; audited with their name before it shows."""
    session = require_role(require_csrf(request), ACTION_ROLES)
    board = request.app[BOARD]
    try:
        alert = board.alerts[int(request.match_info["alert_id"])]
    except (KeyError, ValueError):
        raise ApiError(404, "no alert with this id today") from None
    if alert["acked_by"] is None:
        data = {"alert": alert["id"], "kind": alert["kind"], "rule": alert["rule"], "severity": alert["severity"]}
        append = partial(request.app[ENGINES].audit.append, "alert_ack", data, call_id=alert["call_id"],
                         actor=session.username)
        try:
            await run_db(append)
        except Exception as e:  # the audit log's fault is on /healthz; nothing is acknowledged unaudited
            log.error("alert %d: acknowledgement not audited (%s)", alert["id"], type(e).__name__)
            raise ApiError(503, "the audit log cannot be written; try again") from None
        board.acknowledge(alert["id"], session.username)
    return web.json_response(alert, dumps=_dumps)


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
    board, call_id = request.app[BOARD], request.match_info["call_id"]
    call = board.calls.get(call_id)
    if call is None and (mirror := board.remote.get(call_id)) is not None:
        return await _remote_action(request, mirror.node, call_id, action, leg, session.username)
    if call is None or call.ended_reason is not None:
        if board.call(call_id) is None:
            raise ApiError(404, "no live call with this id")
        raise ApiError(409, "the call has already ended")
    call.act(action, actor=session.username, reason="supervisor", leg=leg)  # type: ignore[arg-type]
    log.info("console action %s on call %s leg %s", action, call.call_id, leg)
    return web.json_response({"ok": True, "call_id": call.call_id, "action": action, "leg": leg}, status=202)


async def _remote_action(request: web.Request, node: str, call_id: str, action: str, leg: str | None,
                         username: str) -> web.Response:
    """Send an action to the node holding the call; it audits, carries out and shows it as its own."""
    try:
        await request.app[CLUSTER].send_action(node, call_id, action, leg, username)
    except (ClusterUnavailableError, psycopg.Error) as e:
        log.error("console action %s on call %s of node %s not sent (%s)", action, call_id, node, type(e).__name__)
        raise ApiError(503, "the call's node cannot be reached now; try again") from None
    log.info("console action %s on call %s leg %s sent to node %s", action, call_id, leg, node)
    return web.json_response({"ok": True, "call_id": call_id, "action": action, "leg": leg, "node": node},
                             status=202)


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
