"""The QA review console: a month's recordings, a recording to listen to and review."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial, wraps
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from recordings.keys import RecordingKeyError
from recordings.qa import (
    VERDICTS,
    QaError,
    Review,
    Sample,
    check_month,
    latest_sample,
    reviews,
    save_review,
)
from recordings.screening import SCORECARD, Mark, Screening, create_tables, load_screening
from recordings.sealed import RecordingTamperedError, SealedIndex, read_frames
from recordings.store import Recording, RecordingNotFound, RecordingStore
from voicebot.web.auth import Session
from voicebot.web.keys import ENGINES, SESSION
from voicebot.web.login import ApiError, Html, render, require_csrf, run_db, signed_in, tag
from voicebot.web.qa_audio import wav_response

log = logging.getLogger(__name__)

REVIEW_ROLES = ("qa", "admin")
MARKS: tuple[Mark, ...] = ("pass", "fail", "n/a")
MAX_NOTES_CHARS = 4000


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
    """Add /qa and /qa/recordings/{id} (page, audio, review); the reports are in qa_reports.py."""
    app.router.add_get("/qa", month_page)
    app.router.add_get("/qa/recordings/{recording_id}", review_page)
    app.router.add_get("/qa/recordings/{recording_id}/audio", audio)
    app.router.add_post("/qa/recordings/{recording_id}/review", post_review)


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


def store_of(request: web.Request) -> RecordingStore:
    """The app's recording store."""
    return request.app[ENGINES].recordings


# --- the month's recordings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthRow:
    """One recording as the month list shows it."""

    recording: Recording
    score: float | None
    sampled: str | None
    reviewed: bool


def month_rows(store: RecordingStore, month: str) -> tuple[list[MonthRow], Sample | None]:
    """The month's recordings, sampled ones first, with their automatic score and review state; and the sample."""
    create_tables(store)
    scores = {r["recording_id"]: r["score"] for r in store.query(
        "SELECT s.recording_id, s.score FROM screenings s JOIN recordings r USING (recording_id) "
        "WHERE r.month = ? AND s.status = 'done'", [month])}
    sample = latest_sample(store, month)
    reasons = {i.recording_id: i.reason for i in sample.items} if sample else {}
    reviewed = {r.recording_id for r in reviews(store, month=month)}
    rows = [MonthRow(r, scores.get(r.recording_id), reasons.get(r.recording_id), r.recording_id in reviewed)
            for r in store.recordings(month=month)]
    rows.sort(key=lambda row: (row.sampled is None, row.recording.started_at, row.recording.recording_id))
    return rows, sample


@page
async def month_page(request: web.Request) -> web.Response:
    """GET /qa?month=YYYY-MM: the month's recordings with links to review them."""
    session = allow(request, REVIEW_ROLES, "review recordings")
    month = month_of(request)
    rows, sample = await run_db(month_rows, store_of(request), month)
    body = [tag("tr", tag("td", tag("a", f"{r.recording.started_at:%Y-%m-%d %H:%M}",
                                    href=f"/qa/recordings/{r.recording.recording_id}")),
                tag("td", r.recording.agent_id or "—"), tag("td", clock(r.recording.duration_s)),
                tag("td", str(len(r.recording.flags))), tag("td", "—" if r.score is None else f"{r.score:.0f}"),
                tag("td", r.sampled or "—"), tag("td", "yes" if r.reviewed else "no"),
                class_="sampled" if r.sampled else None, data_recording_id=r.recording.recording_id)
            for r in rows]
    return render("qa.html", signed_in=signed_in(session), month=month,
                  sample=sample_note(sample), rows=Html("".join(body)),
                  empty="" if rows else "No recordings this month.")


def sample_note(sample: Sample | None) -> str:
    """One line about the month's sample."""
    if sample is None:
        return "No sample drawn yet: run `voicebot qa sample --month` for this month."
    return (f"Sample of {len(sample.items)} recordings at rate {sample.rate:.0%}, drawn "
            f"{sample.created_at:%Y-%m-%d %H:%M} UTC by {sample.actor} (seed {sample.seed}).")


def clock(seconds: float | None) -> str:
    """m:ss, or a dash when unknown."""
    if seconds is None:
        return "—"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


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


def review_data(store: RecordingStore, recording_id: str) -> tuple[Recording, SealedIndex, Screening | None,
                                                                       Review | None, str | None]:
    """What the review page shows: metadata, the audio's index (checked whole), screening, latest review and sample
    reason."""
    recording, index = open_recording(store, recording_id, verify=True)
    try:
        screening = load_screening(store, recording_id)
        latest = (reviews(store, recording_id=recording_id) or [None])[-1]
    except RecordingTamperedError:
        raise PageError(409, "Review data refused", f"The sealed transcript or notes of {recording_id} fail their "
                        "integrity check. Report it to an admin.") from None
    sample = latest_sample(store, recording.month)
    reason = next((i.reason for i in sample.items if i.recording_id == recording_id), None) if sample else None
    return recording, index, screening, latest, reason


@page
async def review_page(request: web.Request) -> web.Response:
    """GET /qa/recordings/{id}: the player, the transcript per leg with flags, the scorecards and the review form."""
    session = allow(request, REVIEW_ROLES, "review recordings")
    rid = request.match_info["recording_id"]
    recording, index, screening, latest, reason = await run_db(review_data, store_of(request), rid)
    flags = screening.flags if screening else recording.flags
    saved = ("Review saved." if request.query.get("saved") == "1" and latest else "")
    return render(
        "qa_review.html", signed_in=signed_in(session), csrf=session.csrf, recording_id=rid,
        month=recording.month, agent=recording.agent_id or "—", started=f"{recording.started_at:%Y-%m-%d %H:%M} UTC",
        duration=clock(index.frames / index.header.sample_rate), outcome=recording.outcome or "—",
        sampled=f"in the sample ({reason})" if reason else "not in the sample",
        incomplete="" if index.complete else "The recording was cut short (the call's writer stopped early).",
        transcript=transcript_html(screening), flags=flags_html(flags),
        scorecard=scorecard_html(screening, latest), verdicts=verdicts_html(latest),
        notes=latest.notes if latest else "", saved=saved, last_review=last_review_note(latest),
        auto_score="not screened yet" if screening is None else f"{screening.score:.0f} / 100")


def transcript_html(screening: Screening | None) -> Html:
    """The transcript as leg-labelled rows in time order, each seeking the player to its start."""
    if screening is None or not screening.transcript:
        return tag("p", "No transcript: the recording has not been screened yet.", class_="muted")
    rows = [tag("li", tag("button", clock(u.start_s), type="button", class_="seek time", data_start=u.start_s),
                tag("span", u.leg, class_="who"), tag("span", u.text, class_="text"),
                class_=f"line leg-{u.leg}", data_start=u.start_s, data_leg=u.leg)
            for u in sorted(screening.transcript, key=lambda u: u.start_s)]
    return tag("ol", *rows, class_="transcript", id="transcript")


def flags_html(flags: list[dict[str, Any]]) -> Html:
    """The flags with their times; each seeks the player to its start."""
    if not flags:
        return tag("p", "No flags.", class_="muted")
    rows = []
    for f in sorted(flags, key=lambda f: f.get("start_s") or 0.0):
        start, severity, category = float(f.get("start_s") or 0.0), str(f.get("severity", "low")), str(f["category"])
        rows.append(tag("li", tag("button", clock(start), type="button", class_="seek", data_start=start),
                        tag("span", severity, class_="badge"), tag("span", category, class_="matched"),
                        tag("span", f"{f.get('leg', '')} · {f.get('rule', '')}", class_="muted"),
                        class_=f"flag sev-{severity}", data_start=start, data_category=category))
    return tag("ol", *rows, class_="events", id="flags")


def scorecard_html(screening: Screening | None, latest: Review | None) -> Html:
    """A row per scorecard item: the automatic mark and why, and the reviewer's pass / fail / n/a radios."""
    rows = []
    for item in SCORECARD:
        auto = screening.scorecard.get(item) if screening else None
        chosen = latest.marks.get(item) if latest else None
        radios = [tag("label", tag("input", type="radio", name=f"mark_{item}", value=mark, required=True,
                                   checked=mark == chosen), " ", mark) for mark in MARKS]
        rows.append(tag("tr", tag("th", item.replace("_", " "), scope="row"),
                        tag("td", auto.mark if auto else "—", class_=f"auto mark-{auto.mark}" if auto else "auto"),
                        tag("td", auto.why if auto else "", class_="muted"), tag("td", *radios, class_="marks"),
                        data_item=item))
    return Html("".join(rows))


def verdicts_html(latest: Review | None) -> Html:
    """The verdict radios, the saved one checked."""
    return Html(" ".join(tag("label", tag("input", type="radio", name="verdict", value=v, required=True,
                                          checked=latest is not None and latest.verdict == v), " ", v)
                         for v in VERDICTS))


def last_review_note(latest: Review | None) -> str:
    """Who last reviewed the recording, when, and their verdict and score."""
    if latest is None:
        return "Not reviewed yet."
    return (f"Last review by {latest.reviewer} at {latest.at:%Y-%m-%d %H:%M} UTC: {latest.verdict}, "
            f"score {latest.score:.0f}.")


def parse_review(form: MultiDictProxy[Any], recording_id: str, reviewer: str) -> Review:
    """The review a form describes; PageError 400 naming what is missing or wrong."""
    marks: dict[str, Mark] = {}
    for item in SCORECARD:
        mark = str(form.get(f"mark_{item}", ""))
        if mark not in MARKS:
            raise PageError(400, "Review not saved", f"Mark {item.replace('_', ' ')} as pass, fail or n/a.")
        marks[item] = mark  # type: ignore[assignment]
    verdict = str(form.get("verdict", ""))
    if verdict not in VERDICTS:
        raise PageError(400, "Review not saved", f"Choose a verdict: {', '.join(VERDICTS)}.")
    notes = str(form.get("notes", "")).strip()
    if len(notes) > MAX_NOTES_CHARS:
        raise PageError(400, "Review not saved", f"Notes are limited to {MAX_NOTES_CHARS} characters.")
    return Review(recording_id=recording_id, reviewer=reviewer, marks=marks, verdict=verdict, notes=notes)


@page
async def post_review(request: web.Request) -> web.Response:
    """POST /qa/recordings/{id}/review (form, CSRF token): save the reviewer's marks and verdict, audited."""
    form = await request.post()
    try:
        session = require_csrf(request, str(form.get("csrf", "")))
    except ApiError:
        raise PageError(403, "Review refused", "The form expired; reload the page and try again.") from None
    allow(request, REVIEW_ROLES, "review recordings")
    rid = request.match_info["recording_id"]
    review = parse_review(form, rid, session.username)
    engines = request.app[ENGINES]
    try:
        await run_db(save_review, engines.recordings, engines.audit, review)
    except RecordingNotFound:
        raise PageError(404, "No such recording", "There is no recording with this id.") from None
    log.info("qa review saved for recording %s", rid)
    return web.Response(status=303, headers={"Location": f"/qa/recordings/{rid}?saved=1#review"})


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
