"""Collection analytics without personal data: contact, right-party contact, promise and kept-promise rates, amounts
promised and collected by stage and script, the sources' minimum-contact compliance, and disputes and cease
requests per week."""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from voicebot.campaigns.importer import stage_for
from voicebot.campaigns.lifecycle import DebtBook
from voicebot.campaigns.store import CampaignStore
from voicebot.campaigns.strategy import Strategy

ZERO = Decimal("0.00")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def collection_report(store: CampaignStore, book: DebtBook, strategy: Strategy, now: datetime) -> dict[str, Any]:
    """The figures over every account of the store, as of `now`."""
    accounts = store.accounts()
    dials = store.dial_times()
    answered = {r["debt"] for r in store.query("SELECT DISTINCT debt FROM attempts WHERE status = 'answered'")}
    talked = {r["debt"] for r in store.query("SELECT DISTINCT debt FROM attempts WHERE conversation = 1")}
    promises = store.query("SELECT a.debt, o.ptp_amount FROM outcomes o JOIN accounts a USING (campaign, account_id) "
                           "WHERE o.kind = 'promise_to_pay'")
    statuses = book.all_statuses()
    by_stage: dict[str, dict[str, Any]] = defaultdict(lambda: {"accounts": 0, "promised": ZERO, "collected": ZERO,
                                                                "script": ""})
    amounts: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in promises:
        amounts[p["debt"]] += Decimal(p["ptp_amount"] or "0")
    compliance: Counter[str] = Counter()
    for account in accounts:
        days = account.days_overdue_at(now)
        row = by_stage[stage_for(days)]
        row["accounts"] += 1
        row["script"] = strategy.stage(days).script
        row["promised"] += amounts.get(account.debt, ZERO)
        status = statuses.get(account.debt)
        row["collected"] += status.paid if status else ZERO
        if account.imported_at is not None:
            met = strategy.contacts_met(assigned_at=account.imported_at,
                                        dials=[a.at for a in dials.get(account.debt, [])], now=now)
            compliance.update(f"{check}_{'met' if ok else 'missed' if ok is False else 'open'}"
                              for check, ok in met.items())
    dialled = {a.debt for a in accounts if a.debt in dials}
    states = Counter(s.state for s in statuses.values())
    kept, broken = states["promise_kept"] + states["paid"], states["promise_broken"]
    return {
        "accounts": len(accounts), "dialled": len(dialled),
        "contact_rate": _rate(len(answered & dialled), len(dialled)),
        "right_party_contact_rate": _rate(len(talked & dialled), len(dialled)),
        "promise_rate": _rate(len(amounts.keys() & talked & dialled), len(talked & dialled)),
        "kept_promise_rate": _rate(kept, kept + broken),
        "by_stage": {stage: {**row, "promised": str(row["promised"]), "collected": str(row["collected"])}
                     for stage, row in sorted(by_stage.items())},
        "minimum_contacts": dict(sorted(compliance.items())),
        "states": dict(sorted(states.items())),
        "disputes_and_cease_by_week": weekly(book),
    }


def weekly(book: DebtBook) -> dict[str, dict[str, int]]:
    """Disputes and cease requests per ISO week (YYYY-Www), from the debts' history."""
    weeks: dict[str, Counter[str]] = defaultdict(Counter)
    for change in book.changes_to(("disputed", "cease")):
        year, week, _ = datetime.fromisoformat(change["at"]).isocalendar()
        weeks[f"{year}-W{week:02d}"][change["to_state"]] += 1
    return {w: {"disputed": c["disputed"], "cease": c["cease"]} for w, c in sorted(weeks.items())}


def report_csv(report: dict[str, Any]) -> str:
    """The figures by stage as CSV (one row per stage, then the overall rates)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["stage", "script", "accounts", "promised", "collected"])
    for stage, row in report["by_stage"].items():
        writer.writerow([stage, row["script"], row["accounts"], row["promised"], row["collected"]])
    writer.writerow([])
    writer.writerow(["figure", "value"])
    for key in ("accounts", "dialled", "contact_rate", "right_party_contact_rate", "promise_rate",
                "kept_promise_rate"):
        writer.writerow([key, "" if report[key] is None else report[key]])
    for key, n in report["minimum_contacts"].items():
        writer.writerow([f"minimum_contacts_{key}", n])
    return out.getvalue()
