"""Automatic screening of every recording: its transcript per leg, the rule packs' flags and a scorecard."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from recordings.store import RecordingStore, stamp

SCORECARD = ("identity_before_disclosure", "required_disclosures", "no_prohibited_language", "dispute_handled",
             "politeness")
"""The scorecard's items, the same for the automatic screen and for QA reviewers."""
SCREENINGS = {"recording_id": str, "status": str, "worker": str, "claimed_at": str, "finished_at": str,
              "error": str, "transcript": bytes, "flags": str, "scorecard": str, "score": float}
Mark = Literal["pass", "fail", "n/a"]


@dataclass(frozen=True, slots=True)
class Utterance:
    """One final transcript piece of a leg, in call time."""

    leg: str
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class ScoreItem:
    """One scorecard item: pass, fail or n/a, and why (never the customer's words)."""

    mark: Mark
    why: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Screening:
    """A recording's automatic screen: transcript (sealed at rest), flags, scorecard and its 0–100 score."""

    recording_id: str
    transcript: list[Utterance]
    flags: list[dict[str, Any]]
    scorecard: dict[str, ScoreItem]
    screened_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def score(self) -> float:
        """The share of applicable items passed, 0–100."""
        marks = [item.mark for item in self.scorecard.values() if item.mark != "n/a"]
        return round(100 * sum(m == "pass" for m in marks) / len(marks), 1) if marks else 100.0


def create_tables(store: RecordingStore) -> None:
    """The `screenings` table, if missing."""
    store.create_table("screenings", SCREENINGS, pk="recording_id")


def save_screening(store: RecordingStore, screening: Screening) -> None:
    """Store a finished screen (the transcript sealed); it replaces a claim on the same recording."""
    create_tables(store)
    transcript = json.dumps([asdict(u) for u in screening.transcript], ensure_ascii=False)
    store.upsert("screenings", {
        "recording_id": screening.recording_id, "status": "done", "finished_at": stamp(screening.screened_at),
        "error": None, "transcript": store.seal_text("transcript", screening.recording_id, transcript),
        "flags": json.dumps(screening.flags, ensure_ascii=False),
        "scorecard": json.dumps({k: asdict(v) for k, v in screening.scorecard.items()}, ensure_ascii=False),
        "score": screening.score}, pk="recording_id")


def load_screening(store: RecordingStore, recording_id: str) -> Screening | None:
    """A recording's finished screen, its transcript opened; None if it has not been screened."""
    create_tables(store)
    rows = store.query("SELECT * FROM screenings WHERE recording_id = ? AND status = 'done'", [recording_id])
    if not rows:
        return None
    row = rows[0]
    transcript = json.loads(store.open_text("transcript", recording_id, row["transcript"]))
    return Screening(recording_id=recording_id, transcript=[Utterance(**u) for u in transcript],
                     flags=json.loads(row["flags"]),
                     scorecard={k: ScoreItem(**v) for k, v in json.loads(row["scorecard"]).items()},
                     screened_at=datetime.fromisoformat(row["finished_at"]))
