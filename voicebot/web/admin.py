"""User administration for the admin role: a page and a small JSON API, every change audited."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aiohttp import web

from voicebot.web.auth import (
    AuthError,
    Session,
    UserStore,
    check_password_text,
    check_role,
    check_setting,
    check_username,
)
from voicebot.web.keys import AUTH, ENGINES, SESSION
from voicebot.web.login import (
    WS_CLOSE_SIGNED_OUT,
    ApiError,
    close_sockets,
    json_body,
    json_text,
    render,
    require_csrf,
    require_role,
    run_db,
)
from voicebot.web.prefs import page_settings

ADMIN_ROLES = ("admin",)
CHANGE_FIELDS = frozenset({"disabled", "role", "password", "display_name"})


def setup_admin(app: web.Application) -> None:
    """Add /admin/users and /api/users."""
    app.router.add_get("/admin/users", users_page)
    app.router.add_get("/api/users", list_users)
    app.router.add_post("/api/users", add_user)
    app.router.add_post("/api/users/{username}", change_user)


async def users_page(request: web.Request) -> web.Response:
    """GET /admin/users: the user list and forms; other roles get a 403 page."""
    session = request[SESSION]
    if session.role not in ADMIN_ROLES:
        return render("message.html", 403, title="Not allowed", message="Only an admin may manage users.")
    page = await page_settings(request)
    return render("admin.html", header=page.header, lang=page.lang, zone=page.zone, username=session.username,
                  csrf=session.csrf)


async def list_users(request: web.Request) -> web.Response:
    """GET /api/users: every user (never a password hash)."""
    require_role(request[SESSION], ADMIN_ROLES)
    users = await run_db(request.app[AUTH].store.users)
    return web.json_response({"users": [asdict(u) for u in users]})


def parse_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The changes a body asks for, each checked: `disabled` a JSON boolean, a known role, a usable password."""
    unknown = set(body) - CHANGE_FIELDS
    if unknown or not body:
        raise ApiError(400, f"send one or more of {', '.join(sorted(CHANGE_FIELDS))}, and nothing else")
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise ApiError(400, '"disabled" must be true or false (a JSON boolean)')
    changes = {key: json_text(body, key) for key in ("role", "password", "display_name") if key in body}
    try:
        if "role" in changes:
            check_role(changes["role"])
        if "password" in changes:
            check_password_text(changes["password"])
        if "display_name" in changes:
            changes["display_name"] = check_setting("display_name", changes["display_name"])
    except AuthError as e:
        raise ApiError(400, str(e)) from None
    return {**changes, **({"disabled": body["disabled"]} if "disabled" in body else {})}


def user_name(raw: str) -> str:
    """A user name as stored (normalised as at creation); ApiError(400) when it cannot be one."""
    try:
        return check_username(raw)
    except AuthError as e:
        raise ApiError(400, str(e)) from None


async def add_user(request: web.Request) -> web.Response:
    """POST /api/users {"username", "role", "password", optional "display_name"}, each a string: create a user."""
    admin = require_role(require_csrf(request), ADMIN_ROLES)
    body = await json_body(request)
    username, role, password = (json_text(body, key) for key in ("username", "role", "password"))
    display_name = json_text(body, "display_name") if "display_name" in body else ""
    try:
        user = await run_db(request.app[AUTH].store.add_user, username, role, password, display_name)
    except AuthError as e:
        raise ApiError(400, str(e)) from None
    await _audit(request, admin, {"event": "add", "username": user.username, "role": user.role})
    return web.json_response(asdict(user), status=201)


async def change_user(request: web.Request) -> web.Response:
    """POST /api/users/{name} with any of {"disabled": bool, "role": str, "password": str}; never one's own lock-out."""
    admin = require_role(require_csrf(request), ADMIN_ROLES)
    changes = parse_changes(await json_body(request))
    name, store = user_name(request.match_info["username"]), request.app[AUTH].store
    if name == admin.username and (changes.get("disabled") or changes.get("role", "admin") != "admin"):
        raise ApiError(400, "you may not disable or demote your own account; ask another admin")
    if await run_db(store.user, name) is None:
        raise ApiError(404, "no such user")
    signed_out = await run_db(store.session_hashes, name) if changes.get("disabled") or "password" in changes else []
    try:
        events = await _apply(store, name, changes)
    except AuthError as e:
        raise ApiError(400, str(e)) from None
    for event in events:
        await _audit(request, admin, event)
    for token_hash in signed_out:  # their open consoles stop at once, not at the next session check
        await close_sockets(request.app, token_hash, WS_CLOSE_SIGNED_OUT, b"signed out by an admin")
    return web.json_response(asdict(await run_db(store.user, name)))


async def _apply(store: UserStore, name: str, changes: dict[str, Any]) -> list[dict[str, Any]]:
    """Make checked changes to one user; the audit events they make."""
    events: list[dict[str, Any]] = []
    if "disabled" in changes:
        user = await run_db(store.set_disabled, name, changes["disabled"])
        events.append({"event": "disable" if user.disabled else "enable", "username": user.username})
    if "role" in changes:
        user = await run_db(store.set_role, name, changes["role"])
        events.append({"event": "role", "username": user.username, "role": user.role})
    if "password" in changes:
        await run_db(store.set_password, name, changes["password"])
        events.append({"event": "password", "username": name})
    if "display_name" in changes:
        await run_db(lambda: store.set_settings(name, display_name=changes["display_name"]))
        events.append({"event": "display_name", "username": name})
    return events


async def _audit(request: web.Request, admin: Session, data: dict[str, Any]) -> None:
    engines = request.app[ENGINES]
    append = lambda: engines.audit.append("user", data, actor=admin.username)  # noqa: E731
    await asyncio.get_running_loop().run_in_executor(engines.disk, append)
