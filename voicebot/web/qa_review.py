"""The QA review page: listen, read the marked transcript and every flag, mark the scorecard (accepting the automatic
marks where they are right, a note per item), give a verdict, and save or save and go to the next sampled call."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from recordings.qa import VERDICTS, Review, latest_sample, reviews, save_review
from recordings.screening import SCORECARD, Mark, Screening, load_screening
from recordings.sealed import RecordingTamperedError, SealedIndex
from recordings.store import Recording, RecordingNotFound, RecordingStore
from voicebot.web.keys import ENGINES
from voicebot.web.login import ApiError, Html, render, require_csrf, run_db, tag
from voicebot.web.prefs import page_settings
from voicebot.web.qa import REVIEW_ROLES, PageError, allow, open_recording, page, store_of
from voicebot.web.qa_transcript import clock, flags_html, heard_flags, listed_flags, transcript_html
from voicebot.web.words import Words

log = logging.getLogger(__name__)

MARKS: tuple[Mark, ...] = ("pass", "fail", "n/a")
MAX_NOTES_CHARS = 4000
MAX_ITEM_NOTE_CHARS = 500


def setup_qa_review(app: web.Application) -> None:
    """Add /qa/recordings/{id} (the page) and its review form's POST."""
    app.router.add_get("/qa/recordings/{recording_id}", review_page)
    app.router.add_post("/qa/recordings/{recording_id}/review", post_review)


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
    rules = request.app[ENGINES].rules
    heard = await run_db(heard_flags, rules, sorted(screening.transcript, key=lambda u: u.start_s)) \
        if screening else []
    listed = listed_flags(screening.flags if screening else recording.flags, heard)
    descriptions = {r.id: r.description for r in rules.pack.rules if r.description}
    settings = await page_settings(request)
    say = settings.say
    return render(
        "qa_review.html", header=settings.header, lang=settings.lang, csrf=session.csrf, recording_id=rid,
        month=recording.month, agent=recording.agent_id or "—",
        started=f"{say.when(recording.started_at)} {say.zone_name}",
        duration=clock(index.frames / index.header.sample_rate), outcome=recording.outcome or "—",
        sampled=say("in_sample", reason=say(reason)) if reason else say("not_in_sample"),
        incomplete="" if index.complete else say("cut_short"),
        transcript=transcript_html(screening, heard, listed, say),
        flags=flags_html(listed, rules.pack.categories, descriptions, say),
        scorecard=scorecard_html(screening, latest, say), verdicts=verdicts_html(latest, say),
        notes=latest.notes if latest else "",
        saved=say("saved") if request.query.get("saved") == "1" and latest else "",
        last_review=last_review_note(latest, say),
        auto_score=say("not_screened") if screening is None else f"{screening.score:.0f} / 100",
        **say.template("review_title", "reports", "recording", "col_agent", "outcome", "channels", "flags",
                       "transcript", "scorecard", "accept_auto", "item", "automatic", "why", "your_mark", "note",
                       "auto_score", "verdict", "notes", "save", "save_next"),
        **say.template("recordings_of", month=recording.month))


def scorecard_html(screening: Screening | None, latest: Review | None, say: Words) -> Html:
    """A row per scorecard item: the automatic mark and why, the reviewer's pass / fail / n/a radios, and a note."""
    rows = []
    for item in SCORECARD:
        auto = screening.scorecard.get(item) if screening else None
        chosen = latest.marks.get(item) if latest else None
        label = say(f"item_{item}")
        radios = [tag("label", tag("input", type="radio", name=f"mark_{item}", value=mark, required=True,
                                   checked=mark == chosen), " ", say.mark(mark)) for mark in MARKS]
        note = tag("input", type="text", name=f"note_{item}", maxlength=MAX_ITEM_NOTE_CHARS,
                   value=latest.item_notes.get(item, "") if latest else "", aria_label=say("note_on", item=label))
        rows.append(tag("tr", tag("th", label, scope="row"),
                        tag("td", say.mark(auto.mark) if auto else "—",
                            class_=f"auto mark-{auto.mark}" if auto else "auto"),
                        tag("td", auto.why if auto else "", class_="muted why"),
                        tag("td", *radios, class_="marks"), tag("td", note, class_="note"),
                        data_item=item, data_auto=auto.mark if auto else None))
    return Html("".join(rows))


def verdicts_html(latest: Review | None, say: Words) -> Html:
    """The verdict radios, the saved one checked."""
    return Html(" ".join(tag("label", tag("input", type="radio", name="verdict", value=v, required=True,
                                          checked=latest is not None and latest.verdict == v), " ", say.mark(v))
                         for v in VERDICTS))


def last_review_note(latest: Review | None, say: Words) -> str:
    """Who last reviewed the recording, when, and their verdict and score."""
    if latest is None:
        return say("not_reviewed_yet")
    return say("last_review", who=latest.reviewer, at=f"{say.when(latest.at)} {say.zone_name}",
               verdict=say.mark(latest.verdict), score=f"{latest.score:.0f}")


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
    item_notes = {item: str(form.get(f"note_{item}", "")).strip() for item in SCORECARD}
    if any(len(note) > MAX_ITEM_NOTE_CHARS for note in item_notes.values()):
        raise PageError(400, "Review not saved", f"A note on an item is limited to {MAX_ITEM_NOTE_CHARS} characters.")
    return Review(recording_id=recording_id, reviewer=reviewer, marks=marks, verdict=verdict, notes=notes,
                  item_notes={item: note for item, note in item_notes.items() if note})


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
    if form.get("next") == "1":
        raise web.HTTPSeeOther(await run_db(next_in_sample, engines.recordings, rid))
    raise web.HTTPSeeOther(f"/qa/recordings/{rid}?saved=1#review")


def next_in_sample(store: RecordingStore, recording_id: str) -> str:
    """Where "save & next" goes: the sample's next recording not reviewed yet (after this one, then from the top),
    or the month's sample list when every one is reviewed."""
    month = store.get(recording_id).month
    sample = latest_sample(store, month)
    reviewed = {r.recording_id for r in reviews(store, month=month)}
    ids = [i.recording_id for i in sample.items] if sample else []
    at = ids.index(recording_id) + 1 if recording_id in ids else 0
    waiting = [rid for rid in ids[at:] + ids[:at] if rid not in reviewed]
    return f"/qa/recordings/{waiting[0]}" if waiting else f"/qa?month={month}&sample=1"


