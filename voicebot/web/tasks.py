"""The collectors' task queue in the console: hardship, complaints, disputes to review, transfers and broken promises
that calls handed to people; collectors see theirs and the unassigned ones, supervisors and admins all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from voicebot.campaigns.store import pii_cipher
from voicebot.campaigns.tasks import TaskBook, TaskError
from voicebot.stores import pii_key
from voicebot.web.auth import check_username
from voicebot.web.keys import CONFIG, ENGINES, SERVE, SESSION
from voicebot.web.login import ApiError, json_body, json_text, render, require_csrf, require_role, run_db
from voicebot.web.prefs import page_settings

TASK_ROLES = ("collector", "supervisor", "admin")
MANAGE_ROLES = ("supervisor", "admin")
TASKS = web.AppKey("tasks", TaskBook)


def setup_tasks(app: web.Application) -> None:
    """Add /tasks, GET /api/tasks and POST /api/tasks/{id}, with the task book open for the app's lifetime."""
    app.cleanup_ctx.append(_tasks_ctx)
    app.router.add_get("/tasks", tasks_page)
    app.router.add_get("/api/tasks", list_tasks)
    app.router.add_post("/api/tasks/{task_id}", change_task)


async def _tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    db = app[SERVE].db
    cipher = await run_db(pii_cipher, db, pii_key(app[CONFIG], db))
    app[TASKS] = await run_db(TaskBook.open, db, app[ENGINES].audit, cipher)
    yield
    app[TASKS].close()


async def tasks_page(request: web.Request) -> web.Response:
    """GET /tasks: the queue (drawn by tasks.js from the API)."""
    session = require_role(request[SESSION], TASK_ROLES)
    page = await page_settings(request)
    return render("tasks.html", header=page.header, lang=page.lang, zone=page.zone, csrf=session.csrf,
                  username=session.username, manage="yes" if session.role in MANAGE_ROLES else "no")


async def list_tasks(request: web.Request) -> web.Response:
    """GET /api/tasks?status=open|done: a collector's own and unassigned tasks, or every task for managers."""
    session = require_role(request[SESSION], TASK_ROLES)
    status = request.query.get("status", "open")
    if status not in ("open", "done"):
        raise ApiError(400, "status must be open or done")
    mine = None if session.role in MANAGE_ROLES else session.username
    tasks = await run_db(lambda: request.app[TASKS].tasks(status=status, assignee=mine, unassigned_too=True))
    return web.json_response({"tasks": [t.as_dict() for t in tasks]})


async def change_task(request: web.Request) -> web.Response:
    """POST /api/tasks/{id} {"action": "done", "note": …} or {"action": "assign", "assignee": name|null}; a
    collector may close or take only their own or unassigned tasks, and take them only for themselves."""
    session = require_role(require_csrf(request), TASK_ROLES)
    body = await json_body(request)
    book, now = request.app[TASKS], datetime.now(UTC)
    try:
        task = await run_db(book.get, request.match_info["task_id"])
        manager = session.role in MANAGE_ROLES
        if not manager and task.assignee not in (None, session.username):
            raise ApiError(403, "this task is another collector's; ask a supervisor to reassign it")
        if body.get("action") == "done":
            note = json_text(body, "note")
            task = await run_db(lambda: book.done(task.task_id, by=session.username, note=note, at=now))
        elif body.get("action") == "assign":
            assignee = _assignee(body, session.username, manager)
            task = await run_db(lambda: book.assign(task.task_id, assignee, by=session.username, at=now))
        else:
            raise ApiError(400, 'action must be "done" or "assign"')
    except TaskError as e:
        raise ApiError(404 if "no task" in str(e) else 409, str(e)) from None
    return web.json_response(task.as_dict())


def _assignee(body: dict[str, Any], me: str, manager: bool) -> str | None:
    raw = body.get("assignee")
    if raw is None:
        return None
    try:
        name = check_username(json_text(body, "assignee"))
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    if not manager and name != me:
        raise ApiError(403, "a collector may take a task only for themselves")
    return name
