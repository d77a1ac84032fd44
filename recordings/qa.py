"""QA sampling and review: at least a rate of each agent's calls a month, flagged calls on top, seeded and audited."""

from __future__ import annotations

import json
import math
import random
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import mean
from typing import Any, Literal

from recordings.screening import SCORECARD, Mark
from recordings.screening import create_tables as create_screening_tables
from recordings.store import RecordingStore, stamp
from voicebot.audit import AuditLog

DEFAULT_RATE = 0.15
VERDICTS = ("pass", "coaching", "fail")
Reason = Literal["random", "flagged"]
UNASSIGNED = "(no agent)"
"""The agent key of recordings that name no agent (imported ones, say): they are sampled as one more agent."""
TABLES: dict[str, tuple[dict[str, type], str | tuple[str, ...]]] = {
    "qa_samples": ({"sample_id": str, "month": str, "rate": float, "seed": int, "created_at": str, "actor": str},
                   "sample_id"),
    "qa_sample_items": ({"sample_id": str, "recording_id": str, "agent_id": str, "reason": str},
                        ("sample_id", "recording_id")),
    "qa_reviews": ({"review_id": str, "recording_id": str, "month": str, "agent_id": str, "reviewer": str,
                    "at": str, "marks": str, "verdict": str, "score": float, "notes": bytes, "item_notes": bytes},
                   "review_id"),
}


class QaError(ValueError):
    """A QA request that cannot be met (bad month or rate, unknown recording, bad verdict)."""


@dataclass(frozen=True, slots=True)
class SampleItem:
    """A recording drawn for review, and why."""

    recording_id: str
    agent_id: str
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One month's draw: its rate and seed (rerunning with them gives the same sample) and its recordings."""

    sample_id: str
    month: str
    rate: float
    seed: int
    created_at: datetime
    actor: str
    items: list[SampleItem]


@dataclass(frozen=True, slots=True, kw_only=True)
class Review:
    """A reviewer's scorecard marks, verdict and notes on one recording."""

    recording_id: str
    reviewer: str
    marks: dict[str, Mark]
    verdict: str
    notes: str = ""
    item_notes: dict[str, str] = field(default_factory=dict)
    """A note per scorecard item, where the reviewer wrote one."""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def score(self) -> float:
        """The share of applicable items passed, 0–100."""
        applicable = [m for m in self.marks.values() if m != "n/a"]
        return round(100 * applicable.count("pass") / len(applicable), 1) if applicable else 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCoverage:
    """One agent's month: recordings, how many were sampled and reviewed, flags and findings."""

    agent_id: str
    recordings: int
    sampled: int
    reviewed: int
    flagged: int
    findings: dict[str, int]
    mean_score: float | None
    verdicts: dict[str, int] = field(default_factory=dict)
    """Reviewed recordings by the verdict of their latest review."""

    @property
    def sampled_rate(self) -> float:
        return self.sampled / self.recordings if self.recordings else 0.0

    @property
    def reviewed_rate(self) -> float:
        return self.reviewed / self.recordings if self.recordings else 0.0


def create_tables(store: RecordingStore) -> None:
    """The QA tables, if missing."""
    for name, (columns, pk) in TABLES.items():
        store.create_table(name, columns, pk=pk)


def check_month(month: str) -> str:
    """YYYY-MM or QaError."""
    try:
        datetime.strptime(month, "%Y-%m")
    except (TypeError, ValueError):
        raise QaError(f"month must be YYYY-MM, not {month!r}") from None
    return month


def choose(recordings: dict[str, list[str]], flagged: set[str], rate: float, seed: int) -> list[SampleItem]:
    """Per agent, ceil(rate × calls) (at least one) drawn with `seed`; then every flagged call not yet drawn."""
    rng = random.Random(seed)
    items = []
    for agent in sorted(recordings):
        ids = sorted(recordings[agent])
        drawn = rng.sample(ids, max(1, math.ceil(rate * len(ids))))
        items += [SampleItem(r, agent, "random") for r in sorted(drawn)]
        items += [SampleItem(r, agent, "flagged") for r in ids if r in flagged and r not in drawn]
    return items


def draw_sample(store: RecordingStore, audit: AuditLog, *, month: str, rate: float = DEFAULT_RATE,
                seed: int | None = None, actor: str) -> Sample:
    """Draw and keep the month's sample; the draw and its seed are written to the audit log."""
    check_month(month)
    if not 0 < rate <= 1:
        raise QaError(f"rate must be above 0 and at most 1, not {rate}")
    create_tables(store)
    by_agent: dict[str, list[str]] = {}
    flagged = set()
    for recording_id, (agent, flags) in month_flags(store, month).items():
        by_agent.setdefault(agent, []).append(recording_id)
        if flags:
            flagged.add(recording_id)
    seed = secrets.randbelow(2**31) if seed is None else seed
    sample = Sample(sample_id=uuid.uuid4().hex, month=month, rate=rate, seed=seed,
                    created_at=datetime.now(UTC).replace(microsecond=0),
                    actor=actor, items=choose(by_agent, flagged, rate, seed))
    store.insert("qa_samples", [{"sample_id": sample.sample_id, "month": month, "rate": rate, "seed": seed,
                                 "created_at": stamp(sample.created_at), "actor": actor}])
    store.insert("qa_sample_items", [{"sample_id": sample.sample_id, "recording_id": i.recording_id,
                                      "agent_id": i.agent_id, "reason": i.reason} for i in sample.items])
    audit.append("qa_sample", {"sample_id": sample.sample_id, "month": month, "rate": rate, "seed": seed,
                               "recordings": [i.recording_id for i in sample.items],
                               "per_agent": {a: len(ids) for a, ids in sorted(by_agent.items())}}, actor=actor)
    return sample


def latest_sample(store: RecordingStore, month: str) -> Sample | None:
    """The month's most recent sample, or None."""
    create_tables(store)
    rows = store.query("SELECT * FROM qa_samples WHERE month = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                       [check_month(month)])
    if not rows:
        return None
    row = rows[0]
    items = [SampleItem(r["recording_id"], r["agent_id"], r["reason"]) for r in store.query(
        "SELECT * FROM qa_sample_items WHERE sample_id = ? ORDER BY rowid", [row["sample_id"]])]
    return Sample(sample_id=row["sample_id"], month=row["month"], rate=row["rate"], seed=row["seed"],
                  created_at=datetime.fromisoformat(row["created_at"]), actor=row["actor"], items=items)


def save_review(store: RecordingStore, audit: AuditLog, review: Review) -> None:
    """Keep a reviewer's verdict (notes sealed at rest) and audit it."""
    if review.verdict not in VERDICTS:
        raise QaError(f"verdict must be one of {', '.join(VERDICTS)}")
    if set(review.marks) != set(SCORECARD) or not set(review.marks.values()) <= {"pass", "fail", "n/a"}:
        raise QaError(f"mark every scorecard item ({', '.join(SCORECARD)}) pass, fail or n/a")
    recording = store.get(review.recording_id)
    create_tables(store)
    review_id = uuid.uuid4().hex
    store.insert("qa_reviews", [{
        "review_id": review_id, "recording_id": review.recording_id, "month": recording.month,
        "agent_id": recording.agent_id or UNASSIGNED, "reviewer": review.reviewer, "at": stamp(review.at),
        "marks": json.dumps(review.marks), "verdict": review.verdict, "score": review.score,
        "notes": store.seal_text("qa_notes", review.recording_id, review.notes),
        "item_notes": store.seal_text("qa_item_notes", review.recording_id, json.dumps(review.item_notes))}])
    audit.append("qa_review", {"review_id": review_id, "recording_id": review.recording_id,
                               "verdict": review.verdict, "score": review.score, "marks": review.marks},
                 call_id=review.recording_id, actor=review.reviewer)


def reviews(store: RecordingStore, *, month: str | None = None, recording_id: str | None = None) -> list[Review]:
    """Reviews in time order, of one month and/or one recording."""
    create_tables(store)
    sql, args = "SELECT * FROM qa_reviews WHERE 1 = 1", []
    if month is not None:
        sql, args = sql + " AND month = ?", [*args, check_month(month)]
    if recording_id is not None:
        sql, args = sql + " AND recording_id = ?", [*args, recording_id]
    return [Review(recording_id=r["recording_id"], reviewer=r["reviewer"], marks=json.loads(r["marks"]),
                   verdict=r["verdict"], notes=store.open_text("qa_notes", r["recording_id"], r["notes"]),
                   item_notes=_item_notes(store, r), at=datetime.fromisoformat(r["at"]))
            for r in store.query(sql + " ORDER BY at, rowid", args)]


def _item_notes(store: RecordingStore, row: dict[str, Any]) -> dict[str, str]:
    """A review's per-item notes (none for a review saved before they existed)."""
    if row.get("item_notes") is None:
        return {}
    return json.loads(store.open_text("qa_item_notes", row["recording_id"], row["item_notes"]))


def coverage(store: RecordingStore, month: str) -> list[AgentCoverage]:
    """Per agent: the month's recordings, sampled (latest sample) and reviewed counts, flagged calls, findings."""
    sample = latest_sample(store, month)
    sampled = {i.recording_id for i in sample.items} if sample else set()
    reviewed: dict[str, list[float]] = {}
    verdict: dict[str, str] = {}
    for review in reviews(store, month=month):
        reviewed.setdefault(review.recording_id, []).append(review.score)
        verdict[review.recording_id] = review.verdict
    by_agent: dict[str, dict[str, list[dict]]] = {}
    for recording_id, (agent, flags) in month_flags(store, month).items():
        by_agent.setdefault(agent, {})[recording_id] = flags
    result = []
    for agent, calls in sorted(by_agent.items()):
        findings = Counter(f["category"] for flags in calls.values() for f in flags)
        ids = set(calls)
        scores = [reviewed[r][-1] for r in ids & reviewed.keys()]
        result.append(AgentCoverage(agent_id=agent, recordings=len(ids), sampled=len(ids & sampled),
                                    reviewed=len(ids & reviewed.keys()), flagged=sum(bool(f) for f in calls.values()),
                                    findings=dict(sorted(findings.items())),
                                    mean_score=round(mean(scores), 1) if scores else None,
                                    verdicts=dict(Counter(verdict[r] for r in ids & verdict.keys()))))
    return result


def month_flags(store: RecordingStore, month: str) -> dict[str, tuple[str, list[dict]]]:
    """Each recording of the month: its agent and its flags (the screen's, which include the live ones, else the
    live ones), read without opening any transcript."""
    create_screening_tables(store)
    rows = store.query("SELECT r.recording_id, r.agent_id, r.flags AS live, s.flags AS screened FROM recordings r "
                       "LEFT JOIN screenings s ON s.recording_id = r.recording_id AND s.status = 'done' "
                       "WHERE r.month = ? AND r.status IN ('complete', 'incomplete') "
                       "ORDER BY r.started_at, r.recording_id", [check_month(month)])
    return {r["recording_id"]: (r["agent_id"] or UNASSIGNED, json.loads(r["screened"] or r["live"] or "[]"))
            for r in rows}
