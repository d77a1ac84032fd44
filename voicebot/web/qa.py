"""The QA console's shared parts: roles, page errors, the month parameter, opening a recording, and its audio."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from functools import partial, wraps
from typing import Any

from aiohttp import web

from recordings.keys import RecordingKeyError
from recordings.qa import (
    QaError,
    check_month,
)
from recordings.screening import create_tables
from recordings.sealed import RecordingTamperedError, SealedIndex, read_frames
from recordings.store import Recording, RecordingNotFound, RecordingStore
from voicebot.web.auth import Session
from voicebot.web.keys import ENGINES, SESSION
from voicebot.web.login import render, run_db
from voicebot.web.qa_audio import wav_response

log = logging.getLogger(__name__)

REVIEW_ROLES = ("qa", "admin")
REPORT_ROLES = ("qa", "admin", "supervisor")
"""Who reads reports and the month's list of calls (supervisors without the audio or the review form)."""


class PageError(Exception):
    """A QA page the console refuses; shown as the message page with its status."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Handler) -> Handler:
    """Show a PageError as the message page."""

    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageError as e:
            return render("message.html", e.status, title=e.title, message=e.message)

    return wrapped


def setup_qa(app: web.Application) -> None:
    """Add /qa/recordings/{id}/audio; the month list is in qa_month.py, the review page in qa_review.py, the
    reports in qa_reports.py."""
    app.router.add_get("/qa/recordings/{recording_id}/audio", audio)


def allow(request: web.Request, roles: Collection[str], what: str) -> Session:
    """The session, if its role is one of `roles`; else a 403 PageError saying so."""
    session = request[SESSION]
    if session.role not in roles:
        raise PageError(403, "Not allowed", f"The {session.role} role may not {what}.")
    return session


def month_of(request: web.Request) -> str:
    """The `month` query parameter (YYYY-MM), this UTC month by default."""
    month = request.query.get("month") or f"{datetime.now(UTC):%Y-%m}"
    try:
        return check_month(month)
    except QaError:
        raise PageError(400, "Bad month", "Give the month as YYYY-MM, for example 2026-03.") from None


def month_screenings(store: RecordingStore, month: str) -> dict[str, dict[str, Any]]:
    """The month's screenings by recording: each one's status and automatic score."""
    create_tables(store)
    return {r["recording_id"]: r for r in store.query(
        "SELECT s.recording_id, s.score, s.status FROM screenings s JOIN recordings r USING (recording_id) "
        "WHERE r.month = ?", [month])}


def store_of(request: web.Request) -> RecordingStore:
    """The app's recording store."""
    return request.app[ENGINES].recordings


# --- one recording: listen and review ------------------------------------------------------------------------


def open_recording(store: RecordingStore, recording_id: str, *, verify: bool) -> tuple[Recording, SealedIndex]:
    """A recording's metadata and where its audio lies (with `verify`, every chunk's integrity checked, one at a
    time); PageError 404 or 409 (with what to do) when it cannot be had."""
    try:
        recording, index = store.get(recording_id), store.index_audio(recording_id)
        if verify:
            for _ in read_frames(index, store.ring, 0, index.frames):
                pass
        return recording, index
    except RecordingNotFound:
        raise PageError(404, "No such recording", "There is no playable recording with this id.") from None
    except RecordingTamperedError:
        log.warning("recording %s failed its integrity check", recording_id)
        raise PageError(409, "Recording refused", f"Recording {recording_id} failed its integrity check: it was "
                        "altered or damaged, so it is not played. Report it to an admin.") from None
    except RecordingKeyError:
        log.warning("recording %s cannot be opened with the key ring", recording_id)
        raise PageError(409, "Recording refused", f"Recording {recording_id} cannot be opened with this server's "
                        "key file (its key is missing). Report it to an admin.") from None


# --- the audio ------------------------------------------------------------------------------------------------


async def audio(request: web.Request) -> web.StreamResponse:
    """GET /qa/recordings/{id}/audio: the recording as WAV with byte ranges, decrypting only what a range needs;
    never cached."""
    session = request[SESSION]
    if session.role not in REVIEW_ROLES:
        return web.Response(status=403, text=f"The {session.role} role may not listen to recordings.")
    rid = request.match_info["recording_id"]
    store = store_of(request)
    try:
        _, index = await run_db(partial(open_recording, verify=False), store, rid)
    except PageError as e:
        return web.Response(status=e.status, text=e.message)
    return await wav_response(request, index, store.ring)
