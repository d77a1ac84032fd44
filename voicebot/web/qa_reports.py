"""QA reports: coverage and findings per agent for a month, with charts and a CSV download."""

from __future__ import annotations

import csv
import io

from aiohttp import web

from recordings.qa import AgentCoverage, coverage
from recordings.store import RecordingStore
from voicebot.web.login import Html, render, run_db, signed_in, tag
from voicebot.web.qa import REVIEW_ROLES, allow, month_of, page, store_of
from voicebot.web.qa_charts import bar_chart, line_chart

REPORT_ROLES = ("qa", "admin", "supervisor")
MIN_SAMPLED_RATE = 0.15
"""Below this share of an agent's calls sampled, the report highlights the agent."""
TREND_MONTHS = 6
CSV_COLUMNS = ("agent_id", "recordings", "sampled", "sampled_pct", "reviewed", "reviewed_pct", "flagged", "findings",
               "mean_score")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def setup_qa_reports(app: web.Application) -> None:
    """Add /qa/reports (page) and /qa/reports.csv."""
    app.router.add_get("/qa/reports", reports_page)
    app.router.add_get("/qa/reports.csv", reports_csv)


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
    """GET /qa/reports?month=YYYY-MM: coverage and findings per agent, violations by category, scores over time."""
    session = allow(request, REPORT_ROLES, "read QA reports")
    month = month_of(request)
    agents, months, trend = await run_db(report_data, store_of(request), month)
    totals: dict[str, int] = {}
    for c in agents:
        for category, n in c.findings.items():
            totals[category] = totals.get(category, 0) + n
    rows = [coverage_row(c) for c in agents]
    return render("qa_reports.html", signed_in=signed_in(session), month=month,
                  rows=Html("".join(rows)), empty="" if agents else "No recordings this month.",
                  min_rate=f"{MIN_SAMPLED_RATE:.0%}", back="/qa" if session.role in REVIEW_ROLES else "/",
                  violations=bar_chart(totals, title=f"Violations by category, {month}"),
                  trend=line_chart(months, trend, title=f"Mean review score per agent, {months[0]} to {month}"))


def coverage_row(c: AgentCoverage) -> Html:
    """One agent's row of the report; an agent sampled below the minimum rate is marked."""
    low = c.sampled_rate < MIN_SAMPLED_RATE
    return tag("tr", tag("td", c.agent_id), tag("td", str(c.recordings)),
               tag("td", f"{c.sampled} ({c.sampled_rate:.0%})", class_="below" if low else None),
               tag("td", f"{c.reviewed} ({c.reviewed_rate:.0%})"), tag("td", str(c.flagged)),
               tag("td", findings_text(c.findings) or "—"),
               tag("td", "—" if c.mean_score is None else f"{c.mean_score:.1f}"),
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
               "" if c.mean_score is None else c.mean_score]
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
