"""User administration for the admin role: a page and a small JSON API, every change audited."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aiohttp import web

from voicebot.web.auth import AuthError, Session, check_password_text, check_role
from voicebot.web.keys import AUTH, ENGINES, SESSION
from voicebot.web.login import ApiError, render, require_csrf, require_role, run_db, signed_in

ADMIN_ROLES = ("admin",)


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
    return render("admin.html", signed_in=signed_in(session), username=session.username, csrf=session.csrf)


async def list_users(request: web.Request) -> web.Response:
    """GET /api/users: every user (never a password hash)."""
    require_role(request[SESSION], ADMIN_ROLES)
    users = await run_db(request.app[AUTH].store.users)
    return web.json_response({"users": [asdict(u) for u in users]})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "send a JSON object")
    return body


async def add_user(request: web.Request) -> web.Response:
    """POST /api/users {"username", "role", "password"}: create a user."""
    admin = require_role(require_csrf(request), ADMIN_ROLES)
    body = await _body(request)
    store = request.app[AUTH].store
    try:
        user = await run_db(store.add_user, str(body.get("username", "")), str(body.get("role", "")),
                            str(body.get("password", "")))
    except AuthError as e:
        raise ApiError(400, str(e)) from None
    await _audit(request, admin, {"event": "add", "username": user.username, "role": user.role})
    return web.json_response(asdict(user), status=201)


async def change_user(request: web.Request) -> web.Response:
    """POST /api/users/{name} with any of {"disabled": bool, "role": str, "password": str}."""
    admin = require_role(require_csrf(request), ADMIN_ROLES)
    body = await _body(request)
    name, store = request.match_info["username"], request.app[AUTH].store
    if name == admin.username and (body.get("disabled") or body.get("role", "admin") != "admin"):
        raise ApiError(400, "you may not disable or demote your own account")
    if await run_db(store.user, name) is None:
        raise ApiError(404, "no such user")
    changes: list[dict[str, Any]] = []
    try:
        if "role" in body:
            check_role(str(body["role"]))
        if "password" in body:
            check_password_text(str(body["password"]))
        if "disabled" in body:
            user = await run_db(store.set_disabled, name, bool(body["disabled"]))
            changes.append({"event": "disable" if user.disabled else "enable", "username": user.username})
        if "role" in body:
            user = await run_db(store.set_role, name, str(body["role"]))
            changes.append({"event": "role", "username": user.username, "role": user.role})
        if "password" in body:
            await run_db(store.set_password, name, str(body["password"]))
            changes.append({"event": "password", "username": name})
    except AuthError as e:
        raise ApiError(400, str(e)) from None
    for change in changes:
        await _audit(request, admin, change)
    user = await run_db(store.user, name)
    return web.json_response(asdict(user))


async def _audit(request: web.Request, admin: Session, data: dict[str, Any]) -> None:
    engines = request.app[ENGINES]
    append = lambda: engines.audit.append("user", data, actor=admin.username)  # noqa: E731
    await asyncio.get_running_loop().run_in_executor(engines.disk, append)
