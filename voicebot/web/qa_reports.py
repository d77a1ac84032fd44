"""QA reports: coverage and findings per agent for a month, with charts and a CSV download."""

from __future__ import annotations

import csv
import io
from collections import Counter
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from recordings.qa import VERDICTS, AgentCoverage, coverage, month_flags, reviews
from recordings.store import RecordingStore
from voicebot.web.keys import ENGINES
from voicebot.web.login import Html, render, run_db, tag
from voicebot.web.prefs import page_settings
from voicebot.web.qa import REPORT_ROLES, allow, month_of, month_screenings, page, store_of
from voicebot.web.qa_charts import bar_chart, line_chart
from voicebot.web.words import Words

MIN_SAMPLED_RATE = 0.15
"""Below this share of an agent's calls sampled, the report highlights the agent."""
TREND_MONTHS = 6
CSV_COLUMNS = ("agent_id", "recordings", "sampled", "sampled_pct", "reviewed", "reviewed_pct", "flagged", "findings",
               "mean_score", *(f"verdict_{v}" for v in VERDICTS))
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def setup_qa_reports(app: web.Application) -> None:
    """Add /qa/reports (page) and /qa/reports.csv."""
    app.router.add_get("/qa/reports", reports_page)
    app.router.add_get("/qa/reports.csv", reports_csv)
    app.router.add_get("/qa/reports/calls.csv", calls_csv)


def months_back(month: str, n: int) -> list[str]:
    """The `n` months ending with `month`, oldest first."""
    year, mon = map(int, month.split("-"))
    index = year * 12 + mon - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - n + 1, index + 1)]


def report_data(store: RecordingStore, month: str) -> tuple[list[AgentCoverage], list[str],
                                                              dict[str, list[float | None]]]:
    """The month's coverage per agent (by name), and each agent's mean review score over the trend months."""
    months = months_back(month, TREND_MONTHS)
    by_month = {m: coverage(store, m) for m in months}
    scores = {m: {c.agent_id: c.mean_score for c in by_month[m]} for m in months}
    agents = sorted({a for month_scores in scores.values() for a, s in month_scores.items() if s is not None})
    trend = {a: [scores[m].get(a) for m in months] for a in agents}
    return sorted(by_month[month], key=lambda c: c.agent_id), months, trend


def findings_text(findings: dict[str, int]) -> str:
    """category=count pairs, most first."""
    return "; ".join(f"{k}={v}" for k, v in sorted(findings.items(), key=lambda kv: (-kv[1], kv[0])))


@page
async def reports_page(request: web.Request) -> web.Response:
    """GET /qa/reports?month=YYYY-MM: coverage, findings and verdicts per agent, flags and flagged calls by
    category (each leading to its calls), and scores over time."""
    allow(request, REPORT_ROLES, "read QA reports")
    month = month_of(request)
    agents, months, trend = await run_db(report_data, store_of(request), month)
    flags, calls = await run_db(category_counts, store_of(request), month)
    categories = request.app[ENGINES].rules.pack.categories
    settings = await page_settings(request)
    say = settings.say
    return render("qa_reports.html", header=settings.header, lang=settings.lang, month=month,
                  rows=Html("".join(coverage_row(c, month, say) for c in agents)),
                  categories=Html("".join(category_row(k, flags[k], calls[k], categories, month, say) for k in
                                          sorted(flags, key=lambda k: (-calls[k], k)))),
                  empty="" if agents else say("no_recordings"),
                  violations=bar_chart(calls, title=say("flagged_calls_chart", month=month), labels=categories),
                  trend=line_chart(months, trend, title=say("trend_chart", first=months[0], month=month)),
                  **say.template("report_title", "live_calls", "recordings", "month", "show", "per_agent_csv",
                                 "per_call_csv", "col_agent", "col_recordings", "col_sampled", "col_reviewed",
                                 "col_flagged_calls", "col_findings", "col_mean", "col_verdicts", "col_category",
                                 "col_flags", "col_calls", "calls_chart_title"),
                  **say.template("coverage", "by_category", "trend_title", month=month),
                  **say.template("below_rate", rate=f"{MIN_SAMPLED_RATE:.0%}"))


def category_counts(store: RecordingStore, month: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per category: its flags in the month's recordings, and the recordings with at least one."""
    flags: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for _, found in month_flags(store, month).values():
        flags.update(str(f["category"]) for f in found)
        calls.update({str(f["category"]) for f in found})
    return dict(flags), dict(calls)


def category_row(category: str, flags: int, calls: int, names: dict[str, str], month: str, say: Words) -> Html:
    """One category: its name in the pack's words, its flags and calls, and a link to those calls."""
    link = tag("a", say("n_calls", n=calls), href=f"/qa?month={month}&category={quote(category)}")
    return tag("tr", tag("td", names.get(category, category)), tag("td", str(flags)), tag("td", link),
               data_category=category)


def coverage_row(c: AgentCoverage, month: str, say: Words) -> Html:
    """One agent's row of the report, leading to the agent's calls; an agent sampled below the minimum rate is
    marked."""
    low = c.sampled_rate < MIN_SAMPLED_RATE
    agent = tag("a", c.agent_id, href=f"/qa?month={month}&agent={quote(c.agent_id)}")
    verdicts = " · ".join(f"{say.mark(v)} {c.verdicts[v]}" for v in VERDICTS if c.verdicts.get(v)) or "—"
    return tag("tr", tag("td", agent), tag("td", str(c.recordings)),
               tag("td", f"{c.sampled} ({c.sampled_rate:.0%})", class_="below" if low else None),
               tag("td", f"{c.reviewed} ({c.reviewed_rate:.0%})"), tag("td", str(c.flagged)),
               tag("td", findings_text(c.findings) or "—"),
               tag("td", "—" if c.mean_score is None else f"{c.mean_score:.1f}"), tag("td", verdicts),
               class_="below-rate" if low else None, data_agent=c.agent_id)


def csv_cell(value: object) -> object:
    """A value safe to open in a spreadsheet: text that could start a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def report_csv(agents: list[AgentCoverage]) -> str:
    """The per-agent table as CSV, one row per agent."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for c in agents:
        row = [c.agent_id, c.recordings, c.sampled, round(100 * c.sampled_rate, 1), c.reviewed,
               round(100 * c.reviewed_rate, 1), c.flagged, findings_text(c.findings),
               "" if c.mean_score is None else c.mean_score, *(c.verdicts.get(v, 0) for v in VERDICTS)]
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


@page
async def reports_csv(request: web.Request) -> web.Response:
    """GET /qa/reports.csv?month=YYYY-MM: the per-agent table as a CSV download."""
    allow(request, REPORT_ROLES, "read QA reports")
    month = month_of(request)
    agents = sorted(await run_db(coverage, store_of(request), month), key=lambda c: c.agent_id)
    return web.Response(text=report_csv(agents), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="qa-report-{month}.csv"'})


def calls_table(store: RecordingStore, month: str, categories: list[str], zone: ZoneInfo) -> list[list[object]]:
    """One row per recording of the month: when (in `zone`), agent, automatic score, the latest review's score,
    verdict, reviewer and notes, and its flags per category."""
    latest = {r.recording_id: r for r in reviews(store, month=month)}
    flags = {rid: found for rid, (_, found) in month_flags(store, month).items()}
    screened = {rid: r["score"] for rid, r in month_screenings(store, month).items() if r["status"] == "done"}
    rows: list[list[object]] = []
    for rec in store.recordings(month=month):
        review = latest.get(rec.recording_id)
        found = Counter(str(f["category"]) for f in flags.get(rec.recording_id, []))
        rows.append([rec.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"), rec.recording_id,
                     rec.agent_id or "", screened.get(rec.recording_id, ""), review.score if review else "",
                     review.verdict if review else "", review.reviewer if review else "",
                     review.notes if review else "", *(found.get(c, 0) for c in categories)])
    return rows


@page
async def calls_csv(request: web.Request) -> web.Response:
    """GET /qa/reports/calls.csv?month=YYYY-MM: one row per call, times in the user's zone (UTC if none)."""
    allow(request, REPORT_ROLES, "read QA reports")
    month = month_of(request)
    zone_name = (await page_settings(request)).zone or "UTC"
    pack = request.app[ENGINES].rules.pack
    _, calls = await run_db(category_counts, store_of(request), month)
    categories = sorted((set(pack.categories) | set(calls)) - {"signal"})
    table = await run_db(calls_table, store_of(request), month, categories, ZoneInfo(zone_name))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([f"date ({zone_name})", "recording_id", "agent_id", "auto_score", "review_score", "verdict",
                     "reviewer", "notes", *categories])
    writer.writerows([csv_cell(v) for v in row] for row in table)
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="qa-calls-{month}.csv"'})
