"""Collection analytics in the console and as CSV, for supervisors and admins: rates, amounts by stage and script,
minimum-contact compliance, debts by state, disputes and cease requests per week."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from voicebot.campaigns.analytics import collection_report, report_csv
from voicebot.campaigns.lifecycle import DebtBook
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.strategy import strategy_for_pack
from voicebot.web.keys import ENGINES, SERVE, SESSION
from voicebot.web.login import Html, render, require_role, run_db, tag
from voicebot.web.prefs import page_settings
from voicebot.web.qa_charts import bar_chart

ANALYTICS_ROLES = ("supervisor", "admin")
RATES = ("contact_rate", "right_party_contact_rate", "promise_rate", "kept_promise_rate")


def setup_collection(app: web.Application) -> None:
    """Add /collection and /collection.csv."""
    app.router.add_get("/collection", collection_page)
    app.router.add_get("/collection.csv", collection_csv)


def _report(app: web.Application) -> dict[str, Any]:
    engines = app[ENGINES]
    strategy = strategy_for_pack(engines.rules.pack.name)
    with CampaignStore.open(app[SERVE].db, pii=False) as store, DebtBook.open(app[SERVE].db, engines.audit) as book:
        return collection_report(store, book, strategy, datetime.now(UTC))


async def collection_page(request: web.Request) -> web.Response:
    """GET /collection: the figures, tables and charts."""
    require_role(request[SESSION], ANALYTICS_ROLES)
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
    return render("collection.html", header=page.header, lang=page.lang,
                  accounts=str(report["accounts"]), dialled=str(report["dialled"]),
                  rates=Html("".join(rates)), stages=Html("".join(stages)), weeks=Html("".join(weeks)),
                  states=bar_chart(report["states"], title=say("debts_by_state")),
                  contacts=bar_chart(report["minimum_contacts"], title=say("minimum_contacts")),
                  **say.template("collection_title", "live_calls", "accounts", "dialled", "rates", "by_stage",
                                 "col_stage", "col_script", "col_recordings", "promised", "collected",
                                 "debts_by_state", "minimum_contacts", "disputes_cease", "week", "disputed", "cease",
                                 "download_csv"))


async def collection_csv(request: web.Request) -> web.Response:
    """GET /collection.csv: the figures by stage and the overall rates."""
    require_role(request[SESSION], ANALYTICS_ROLES)
    report = await run_db(_report, request.app)
    return web.Response(text=report_csv(report), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="collection.csv"'})
