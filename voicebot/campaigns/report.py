"""Campaign reports from the store, without personal data: accounts by stage and state, dials, outcomes, promises."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from voicebot.campaigns.importer import STAGES
from voicebot.campaigns.store import CampaignStore

STATES = ("pending", "retry", "callback", "done", "exhausted", "blocked")
DIAL_STATUSES = ("answered", "no_answer", "busy", "failed")


def _counts(store: CampaignStore, sql: str, campaign: str) -> dict[str, int]:
    return {r["k"]: r["n"] for r in store.query(sql, [campaign]) if r["k"] is not None}


def campaign_report(store: CampaignStore, campaign: str, *, accounts: bool = False) -> dict[str, Any]:
    """One campaign's figures; with `accounts`, a line per account (ids, stage, state, dials, last result)."""
    meta = store.query("SELECT created_at, updated_at, source FROM campaigns WHERE name = ?", [campaign])[0]
    stages = _counts(store, "SELECT stage AS k, count(*) AS n FROM accounts WHERE campaign = ? GROUP BY stage",
                     campaign)
    states = _counts(store, "SELECT state AS k, count(*) AS n FROM accounts WHERE campaign = ? GROUP BY state",
                     campaign)
    statuses = _counts(store, "SELECT status AS k, count(*) AS n FROM attempts WHERE campaign = ? GROUP BY status",
                       campaign)
    kinds = _counts(store, "SELECT kind AS k, count(*) AS n FROM outcomes WHERE campaign = ? GROUP BY kind",
                    campaign)
    talks = store.query("SELECT count(*) AS n FROM attempts WHERE campaign = ? AND conversation = 1", [campaign])
    promised = store.query("SELECT ptp_amount FROM outcomes WHERE campaign = ? AND kind = 'promise_to_pay'",
                           [campaign])
    report: dict[str, Any] = {
        "campaign": campaign, "source": meta["source"], "created_at": meta["created_at"],
        "accounts": sum(states.values()),
        "stages": {s: stages.get(s, 0) for s in STAGES},
        "states": {s: states.get(s, 0) for s in STATES},
        "dials": {s: statuses.get(s, 0) for s in DIAL_STATUSES},
        "refused_by_gate": statuses.get("refused", 0),
        "in_progress": statuses.get("dialling", 0),
        "conversations": talks[0]["n"],
        "outcomes": dict(sorted(kinds.items())),
        "promised_amount": str(sum((_amount(r["ptp_amount"]) for r in promised), Decimal("0.00"))),
        "next_due": store.next_due(campaign).isoformat() if store.next_due(campaign) else None,
    }
    if accounts:
        report["account_lines"] = account_lines(store, campaign)
    return report


def account_lines(store: CampaignStore, campaign: str) -> list[dict[str, Any]]:
    """Per account: id, stage, state, dials, last status and outcome, next due."""
    return store.query(
        "SELECT a.account_id, a.stage, a.state, a.next_due, "
        "(SELECT count(*) FROM attempts t WHERE t.campaign = a.campaign AND t.account_id = a.account_id "
        " AND t.status NOT IN ('refused', 'dialling')) AS dials, "
        "(SELECT t.status FROM attempts t WHERE t.campaign = a.campaign AND t.account_id = a.account_id "
        " ORDER BY t.started_at DESC, t.rowid DESC LIMIT 1) AS last_status, "
        "(SELECT o.kind FROM outcomes o WHERE o.campaign = a.campaign AND o.account_id = a.account_id "
        " ORDER BY o.at DESC, o.rowid DESC LIMIT 1) AS last_outcome "
        "FROM accounts a WHERE a.campaign = ? ORDER BY a.source_line, a.account_id", [campaign])


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    def pairs(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    dials = sum(report["dials"].values())
    lines = [
        f"campaign {report['campaign']} (from {report['source']}, created {report['created_at']}): "
        f"{report['accounts']} accounts",
        f"  stages:   {pairs(report['stages'])}",
        f"  states:   {pairs(report['states'])}",
        f"  dials:    {dials} ({pairs(report['dials'])}); refused by the gate {report['refused_by_gate']}; "
        f"conversations {report['conversations']}",
        f"  outcomes: {pairs(report['outcomes'])}; promised {report['promised_amount']}",
        f"  next due: {report['next_due'] or 'nothing left to dial'}",
    ]
    for a in report.get("account_lines", []):
        lines.append(f"    {a['account_id']}\t{a['stage']}\t{a['state']}\tdials {a['dials']}\t"
                     f"last {a['last_status'] or '-'}/{a['last_outcome'] or '-'}\tnext {a['next_due'] or '-'}")
    return "\n".join(lines)


def _amount(text: str | None) -> Decimal:
    try:
        value = Decimal(text) if text else Decimal("0")
    except InvalidOperation:
        return Decimal("0")
    return value if value.is_finite() and value > 0 else Decimal("0")
