"""The QA month page: the month's recordings, filtered and sorted, review progress, and the buttons that draw the
month's sample and start screening."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from aiohttp import web

from recordings.batch_screening import ScreenModels, StorePaths, screen_pending
from recordings.qa import DEFAULT_RATE, QaError, Sample, check_month, draw_sample, latest_sample, month_flags, reviews
from recordings.store import Recording, RecordingStore
from voicebot.web.keys import CONFIG, ENGINES, SERVE
from voicebot.web.login import ApiError, Html, render, require_csrf, run_db, tag
from voicebot.web.prefs import page_settings
from voicebot.web.qa import (
    REPORT_ROLES,
    REVIEW_ROLES,
    PageError,
    allow,
    month_of,
    month_screenings,
    page,
    store_of,
)
from voicebot.web.qa_transcript import clock
from voicebot.web.words import Words

log = logging.getLogger(__name__)

SORTS = ("sample", "date", "agent", "score", "flags")
FILTER_CHARS = 64


@dataclass(slots=True)
class ScreeningRun:
    """The screening process the QA page started, if any (one at a time per server)."""

    process: BaseProcess | None = None

    @property
    def running(self) -> bool:
        """Whether it is still screening."""
        return self.process is not None and self.process.is_alive()


SCREENING = web.AppKey("qa_screening", ScreeningRun)
SCREENING_STOP_S = 10.0


@dataclass(frozen=True, slots=True)
class MonthRow:
    """One recording as the month list shows it."""

    recording: Recording
    score: float | None
    sampled: str | None
    reviewed: bool
    flags: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MonthFilter:
    """What the month list is narrowed to and ordered by, from the query string."""

    sample_only: bool = False
    unreviewed: bool = False
    flagged: bool = False
    agent: str = ""
    category: str = ""
    sort: str = "sample"

    @classmethod
    def of(cls, query: Any) -> MonthFilter:
        """The filter a query string asks for; unknown sorts fall back to the sample first."""
        sort = query.get("sort", "sample")
        return cls(query.get("sample") == "1", query.get("unreviewed") == "1", query.get("flagged") == "1",
                   query.get("agent", "")[:FILTER_CHARS], query.get("category", "")[:FILTER_CHARS],
                   sort if sort in SORTS else "sample")

    def keeps(self, row: MonthRow) -> bool:
        """Whether a row passes every filter."""
        return ((not self.sample_only or row.sampled is not None) and (not self.unreviewed or not row.reviewed)
                and (not self.flagged or bool(row.flags))
                and (not self.agent or (row.recording.agent_id or "") == self.agent)
                and (not self.category or any(f.get("category") == self.category for f in row.flags)))

    def order(self, rows: list[MonthRow]) -> list[MonthRow]:
        """The rows in the chosen order (the sample first, then by start, unless asked otherwise)."""
        keys = {"sample": lambda r: (r.sampled is None, r.recording.started_at),
                "date": lambda r: r.recording.started_at,
                "agent": lambda r: (r.recording.agent_id or "", r.recording.started_at),
                "score": lambda r: (r.score is None, r.score or 0.0), "flags": lambda r: -len(r.flags)}
        return sorted(rows, key=keys[self.sort])


def month_rows(store: RecordingStore, month: str) -> tuple[list[MonthRow], Sample | None, dict[str, int]]:
    """The month's recordings with their automatic score, sample reason, review state and flags; the sample; and
    how many of the month's recordings are screened, waiting or failed."""
    screened = month_screenings(store, month)
    sample = latest_sample(store, month)
    reasons = {i.recording_id: i.reason for i in sample.items} if sample else {}
    reviewed = {r.recording_id for r in reviews(store, month=month)}
    flags = {rid: found for rid, (_, found) in month_flags(store, month).items()}
    rows = [MonthRow(r, (screened.get(r.recording_id) or {}).get("score") if
                     (screened.get(r.recording_id) or {}).get("status") == "done" else None,
                     reasons.get(r.recording_id), r.recording_id in reviewed, flags.get(r.recording_id, []))
            for r in store.recordings(month=month)]
    counts = {"done": 0, "waiting": 0, "failed": 0}
    for r in rows:
        status = (screened.get(r.recording.recording_id) or {}).get("status")
        counts["done" if status == "done" else "failed" if status == "failed" else "waiting"] += 1
    return rows, sample, counts


@page
async def month_page(request: web.Request) -> web.Response:
    """GET /qa?month=YYYY-MM&sample=1&unreviewed=1&flagged=1&agent=…&category=…&sort=…: the month's recordings."""
    session = allow(request, REPORT_ROLES, "list recordings")
    reviewer = session.role in REVIEW_ROLES
    month, wanted = month_of(request), MonthFilter.of(request.query)
    rows, sample, screening = await run_db(month_rows, store_of(request), month)
    shown = wanted.order([r for r in rows if wanted.keeps(r)])
    settings = await page_settings(request)
    say = settings.say
    note = say("screening_note", **screening) + (say("screening_running") if request.app[SCREENING].running else "")
    return render("qa.html", header=settings.header, lang=settings.lang, month=month,
                  actions=action_forms(month, session.csrf, say) if reviewer else Html(""),
                  sample=sample_note(sample, say), progress=progress_note(rows, sample, say), screening=note,
                  filters=filter_form(month, wanted, rows, say),
                  rows=Html("".join(month_row(r, say, linked=reviewer) for r in shown)),
                  empty="" if shown else say("no_match") if rows else say("no_recordings"),
                  **say.template("qa_title", "live_calls", "reports", "month", "show", "col_agent", "col_duration",
                                 "col_flags", "col_auto", "col_sample", "col_reviewed"),
                  **say.template("recordings_of", month=month), **say.template("col_date", zone=say.zone_name))


def action_forms(month: str, csrf: str, say: Words) -> Html:
    """The buttons that draw the month's sample and start screening (for the roles that review)."""
    def form(action: str, label: str, form_id: str) -> Html:
        return tag("form", tag("input", type="hidden", name="csrf", value=csrf),
                   tag("input", type="hidden", name="month", value=month), tag("button", label, type="submit"),
                   method="post", action=action, class_="inline", id=form_id)

    return tag("div", form("/qa/sample", say("draw_sample"), "draw-sample"),
               form("/qa/screen", say("start_screening"), "start-screening"), class_="qa-actions")


def month_row(r: MonthRow, say: Words, *, linked: bool) -> Html:
    """One recording's row: when (a link to its review, for reviewers), agent, length, flags, automatic score,
    sample reason, review state."""
    reason = r.sampled and (f"{say(r.sampled)} · {say('flagged')}" if r.flags and r.sampled != "flagged"
                            else say(r.sampled))
    when = say.when(r.recording.started_at)
    return tag("tr", tag("td", tag("a", when, href=f"/qa/recordings/{r.recording.recording_id}") if linked else when),
               tag("td", r.recording.agent_id or "—"), tag("td", clock(r.recording.duration_s)),
               tag("td", str(len(r.flags))), tag("td", "—" if r.score is None else f"{r.score:.0f}"),
               tag("td", reason or "—"), tag("td", say("yes") if r.reviewed else say("no")),
               class_="sampled" if r.sampled else None, data_recording_id=r.recording.recording_id)


def filter_form(month: str, wanted: MonthFilter, rows: list[MonthRow], say: Words) -> Html:
    """The filters and the order, as a GET form that keeps the month."""
    agents = sorted({r.recording.agent_id or "" for r in rows} - {""})
    categories = sorted({str(f.get("category")) for r in rows for f in r.flags})

    def box(name: str, label: str, on: bool) -> Html:
        return tag("label", tag("input", type="checkbox", name=name, value="1", checked=on), " ", say(label))

    def choice(name: str, values: list[str], current: str) -> Html:
        options = [tag("option", say("all"), value="")]
        options += [tag("option", v, value=v, selected=v == current) for v in values]
        return tag("label", say(name), " ", tag("select", *options, name=name, id=f"filter-{name}"))

    sorts = [tag("option", say(f"sort_{s}"), value=s, selected=s == wanted.sort) for s in SORTS]
    return tag("form", tag("input", type="hidden", name="month", value=month),
               box("sample", "sample_only", wanted.sample_only), box("unreviewed", "not_reviewed", wanted.unreviewed),
               box("flagged", "flagged", wanted.flagged), choice("agent", agents, wanted.agent),
               choice("category", categories, wanted.category),
               tag("label", say("sort"), " ", tag("select", *sorts, name="sort", id="filter-sort")),
               tag("button", say("apply"), type="submit"), method="get", action="/qa", class_="filters", id="filters")


def progress_note(rows: list[MonthRow], sample: Sample | None, say: Words) -> str:
    """How far review of the sample (and of the month) has got."""
    reviewed = {r.recording.recording_id for r in rows if r.reviewed}
    month = say("progress_month", done=len(reviewed), n=len(rows))
    if sample is None:
        return month
    done = sum(i.recording_id in reviewed for i in sample.items)
    return say("progress_sample", done=done, n=len(sample.items)) + month


def sample_note(sample: Sample | None, say: Words) -> str:
    """One line about the month's sample."""
    if sample is None:
        return say("no_sample")
    return say("sample_note", n=len(sample.items), rate=f"{sample.rate:.0%}", at=say.when(sample.created_at),
               actor=sample.actor, seed=sample.seed)


@page
async def post_sample(request: web.Request) -> web.Response:
    """POST /qa/sample (form: month, CSRF): draw the month's sample at 15% per agent plus every flagged call."""
    form = await request.post()
    session = _form_session(request, form)
    month = form_month(form)
    engines = request.app[ENGINES]
    try:
        sample = await run_db(lambda: draw_sample(engines.recordings, engines.audit, month=month, rate=DEFAULT_RATE,
                                                  actor=session.username))
    except QaError as e:
        raise PageError(400, "Sample not drawn", str(e)) from None
    log.info("qa sample of %d recordings drawn for %s", len(sample.items), month)
    raise web.HTTPSeeOther(f"/qa?month={month}&sample=1")


@page
async def post_screen(request: web.Request) -> web.Response:
    """POST /qa/screen (form: month, CSRF): screen every recording not screened yet, in a process of its own with
    one worker; a run already going is not started twice. Claims make it resumable and never double."""
    form = await request.post()
    _form_session(request, form)
    month = form_month(form)
    app, run = request.app, request.app[SCREENING]
    if not run.running:
        models = ScreenModels.of(app[CONFIG], app[SERVE].pack)
        paths = StorePaths.of(app[ENGINES].recordings)
        run.process = multiprocessing.get_context("spawn").Process(
            target=screen_in_background, args=(paths, models), name="qa-screening")
        run.process.start()
        log.info("screening started from the QA page (pid %s)", run.process.pid)
    raise web.HTTPSeeOther(f"/qa?month={month}")


def screen_in_background(paths: StorePaths, models: ScreenModels) -> None:
    """The page's screening process: open the store and screen what is pending with one worker."""
    with paths.open() as store:
        report = screen_pending(store, models, workers=1)
    log.info("screening from the QA page screened %d recordings", len(report.outcomes))


def form_month(form: Any) -> str:
    """A form's `month` (YYYY-MM); PageError 400 otherwise."""
    try:
        return check_month(str(form.get("month", ""))[:7])
    except QaError:
        raise PageError(400, "Bad month", "Give the month as YYYY-MM, for example 2026-03.") from None


def _form_session(request: web.Request, form: Any) -> Any:
    try:
        session = require_csrf(request, str(form.get("csrf", "")))
    except ApiError:
        raise PageError(403, "Refused", "The form expired; reload the page and try again.") from None
    allow(request, REVIEW_ROLES, "draw samples or start screening")
    return session


async def stop_screening(app: web.Application) -> None:
    """On shutdown: stop a screening run the page started; its claims let the next run take over."""
    run = app[SCREENING]
    if run.running and run.process is not None:
        run.process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, run.process.join, SCREENING_STOP_S)


def setup_qa_month(app: web.Application) -> None:
    """Add /qa, POST /qa/sample and POST /qa/screen."""
    app[SCREENING] = ScreeningRun()
    app.router.add_get("/qa", month_page)
    app.router.add_post("/qa/sample", post_sample)
    app.router.add_post("/qa/screen", post_screen)
    app.on_shutdown.append(stop_screening)
