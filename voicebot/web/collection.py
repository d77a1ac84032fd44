"""Collection analytics in the console and as CSV, for supervisors and admins: rates, amounts by stage and script,
minimum-contact compliance, debts by state, disputes and cease requests per week; and the work they paused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aiohttp import web

from voicebot.campaigns.analytics import collection_report, report_csv
from voicebot.campaigns.lifecycle import DebtBook
from voicebot.campaigns.pauses import SCOPES, Pauses, Scope
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.strategy import strategy_for_pack
from voicebot.web.keys import ENGINES, SERVE, SESSION
from voicebot.web.login import ApiError, Html, render, require_csrf, require_role, run_db, tag
from voicebot.web.prefs import page_settings
from voicebot.web.qa_charts import bar_chart
from voicebot.web.words import Words

ANALYTICS_ROLES = ("supervisor", "admin")
RATES = ("contact_rate", "right_party_contact_rate", "promise_rate", "kept_promise_rate")


MAX_PAUSE_NAME = 200


def setup_collection(app: web.Application) -> None:
    """Add /collection, /collection.csv and POST /collection/pauses."""
    app.router.add_get("/collection", collection_page)
    app.router.add_get("/collection.csv", collection_csv)
    app.router.add_post("/collection/pauses", change_pause)


def _report(app: web.Application) -> dict[str, Any]:
    engines = app[ENGINES]
    strategy = strategy_for_pack(engines.rules.pack.name)
    with CampaignStore.open(app[SERVE].db, pii=False) as store, DebtBook.open(app[SERVE].db, engines.audit) as book, \
            Pauses.open(app[SERVE].db, engines.audit) as pauses:
        return {**collection_report(store, book, strategy, datetime.now(UTC)), "pauses": pauses.listed()}


async def collection_page(request: web.Request) -> web.Response:
    """GET /collection: the figures, tables and charts, and what is paused."""
    session = require_role(request[SESSION], ANALYTICS_ROLES)
    report = await run_db(_report, request.app)
    page = await page_settings(request)
    say = page.say
    rates = [tag("tr", tag("th", say(key), scope="row"),
                 tag("td", "—" if report[key] is None else f"{report[key]:.0%}"), data_figure=key) for key in RATES]
    stages = [tag("tr", tag("td", say(f"stage_{stage}")), tag("td", row["script"]), tag("td", str(row["accounts"])),
                  tag("td", row["promised"]), tag("td", row["collected"]), data_stage=stage)
              for stage, row in report["by_stage"].items()]
    weeks = [tag("tr", tag("td", week), tag("td", str(n["disputed"])), tag("td", str(n["cease"])))
             for week, n in report["disputes_and_cease_by_week"].items()]
    return render("collection.html", header=page.header, lang=page.lang, csrf=session.csrf,
                  pauses=_pauses(report["pauses"], say, session.csrf), scopes=_scope_options(say),
                  accounts=str(report["accounts"]), dialled=str(report["dialled"]),
                  rates=Html("".join(rates)), stages=Html("".join(stages)), weeks=Html("".join(weeks)),
                  states=bar_chart(report["states"], title=say("debts_by_state")),
                  contacts=bar_chart(report["minimum_contacts"], title=say("minimum_contacts")),
                  **say.template("collection_title", "live_calls", "accounts", "dialled", "rates", "by_stage",
                                 "col_stage", "col_script", "col_recordings", "promised", "collected",
                                 "debts_by_state", "minimum_contacts", "disputes_cease", "week", "disputed", "cease",
                                 "download_csv", "pauses", "pause", "scope", "pause_name", "paused_by", "since"))


async def collection_csv(request: web.Request) -> web.Response:
    """GET /collection.csv: the figures by stage and the overall rates."""
    require_role(request[SESSION], ANALYTICS_ROLES)
    report = await run_db(_report, request.app)
    return web.Response(text=report_csv(report), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="collection.csv"'})


async def change_pause(request: web.Request) -> web.Response:
    """POST /collection/pauses (form: action pause|resume, scope, name): audited with the user, then back to the
    page; a paused account, campaign or pack is not dialled by any run until resumed."""
    form = await request.post()
    session = require_role(require_csrf(request, str(form.get("csrf", ""))), ANALYTICS_ROLES)
    action, scope, name = (str(form.get(k, "")).strip() for k in ("action", "scope", "name"))
    if action not in ("pause", "resume") or scope not in SCOPES:
        raise ApiError(400, f"action must be pause or resume, scope one of {', '.join(SCOPES)}")
    if not name or len(name) > MAX_PAUSE_NAME or not name.isprintable():
        raise ApiError(400, f"name what to pause in 1 to {MAX_PAUSE_NAME} printable characters")
    if scope == "account" and name.count("/") != 1:
        raise ApiError(400, "an account is named campaign/account_id")

    target = cast(Scope, scope)

    def change() -> None:
        with Pauses.open(request.app[SERVE].db, request.app[ENGINES].audit) as pauses:
            if action == "pause":
                pauses.pause(target, name, by=session.username, at=datetime.now(UTC))
            else:
                pauses.resume(target, name, by=session.username)

    await run_db(change)
    raise web.HTTPSeeOther("/collection#pauses")


def _pauses(listed: list[dict[str, str]], say: Words, csrf: str) -> Html:
    """A row per pause with its Resume button, or one line saying nothing is paused."""
    if not listed:
        return tag("tr", tag("td", say("nothing_paused"), colspan="5"))
    rows = []
    for p in listed:
        resume = tag("form", *(tag("input", type="hidden", name=k, value=v) for k, v in (
            ("csrf", csrf), ("action", "resume"), ("scope", p["scope"]), ("name", p["name"]))),
            tag("button", say("resume"), type="submit", aria_label=f"{say('resume')} {p['name']}"),
            method="post", action="/collection/pauses", class_="inline")
        rows.append(tag("tr", tag("td", say(f"scope_{p['scope']}")), tag("td", p["name"]), tag("td", p["by"]),
                        tag("td", say.when(datetime.fromisoformat(p["at"]))), tag("td", resume),
                        data_pause=f"{p['scope']}:{p['name']}"))
    return Html("".join(rows))


def _scope_options(say: Words) -> Html:
    return Html("".join(tag("option", say(f"scope_{scope}"), value=scope) for scope in SCOPES))
