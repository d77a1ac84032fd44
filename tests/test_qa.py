"""QA sampling and coverage: at least 15% of each agent's month, flagged calls on top, reproducible, audited."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pg_server import stored_bytes

from recordings.qa import QaError, Review, coverage, draw_sample, latest_sample, reviews, save_review
from recordings.screening import SCORECARD
from recordings.store import RecordingStore
from voicebot.audit import AuditLog

VOICEBOT = str(Path(sys.executable).parent / "voicebot")
NOV = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
CALLS = {"a1": 40, "a2": 7, "a3": 1, "a4": 13}
FLAGGED = {"a2-3", "a2-5", "a4-0"}


@pytest.fixture
def db(audit_log: AuditLog, tmp_path: Path):
    """A month of recordings beside the audit log, in SQLite or PostgreSQL (a shared store's keys and folder where
    the CLI looks for them: in the data folder)."""
    keys = tmp_path / "recordings.keys" if isinstance(audit_log.path, str) else None
    with RecordingStore.open(audit_log.path, tmp_path / "recordings", key_path=keys) as store:
        for agent, n in CALLS.items():
            for i in range(n):
                add(store, f"{agent}-{i}", agent, NOV + timedelta(hours=i))
        add(store, "december", "a1", datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
        yield store, audit_log


def add(store: RecordingStore, call_id: str, agent: str, at: datetime) -> None:
    store.register(call_id, started_at=at, agent_id=agent)
    writer = store.writer(call_id, at)
    writer.write("agent", np.full(800, 100, np.int16), 8000)
    writer.write("customer", np.full(800, 100, np.int16), 8000)
    writer.close()
    flags = [{"leg": "agent", "rule": "cn.threat", "category": "threat", "severity": "critical", "start_s": 0.1,
              "end_s": 0.2}] if call_id in FLAGGED else []
    store.finish(call_id, ended_at=at + timedelta(seconds=1), duration_s=0.1, sample_rate=8000, flags=flags)


def test_a_sample_meets_the_rate_for_every_agent_and_adds_flagged_calls(db) -> None:
    store, audit = db
    sample = draw_sample(store, audit, month="2026-11", actor="qa-lead")
    for agent, n in CALLS.items():
        drawn = [i for i in sample.items if i.agent_id == agent and i.reason == "random"]
        assert len(drawn) == max(1, math.ceil(0.15 * n)) and len(drawn) / n >= 0.15
        assert all(i.recording_id.startswith(agent + "-") for i in drawn)
    chosen = {i.recording_id for i in sample.items}
    assert chosen >= FLAGGED, "flagged calls are always reviewed"
    assert "december" not in chosen
    assert {i.recording_id for i in sample.items if i.reason == "flagged"} <= FLAGGED
    [record] = [r for r in audit.records() if r.kind == "qa_sample"]
    assert record.actor == "qa-lead" and record.data["seed"] == sample.seed
    assert record.data["recordings"] == [i.recording_id for i in sample.items]
    assert latest_sample(store, "2026-11") == sample


def test_a_sample_is_identical_when_rerun_with_its_seed(db) -> None:
    store, audit = db
    first = draw_sample(store, audit, month="2026-11", actor="qa")
    again = draw_sample(store, audit, month="2026-11", seed=first.seed, actor="qa")
    other = draw_sample(store, audit, month="2026-11", seed=first.seed + 1, actor="qa")
    assert again.items == first.items and again.sample_id != first.sample_id
    assert other.items != first.items


def test_bad_month_and_rate_are_refused(db) -> None:
    store, audit = db
    with pytest.raises(QaError, match="YYYY-MM"):
        draw_sample(store, audit, month="2026-13", actor="qa")
    with pytest.raises(QaError, match="rate"):
        draw_sample(store, audit, month="2026-11", rate=0, actor="qa")


def test_reviews_are_kept_with_sealed_notes_and_counted_in_coverage(db) -> None:
    store, audit = db
    sample = draw_sample(store, audit, month="2026-11", actor="qa")
    marks = dict.fromkeys(SCORECARD, "pass") | {"politeness": "fail"}
    save_review(store, audit, Review(recording_id="a2-3", reviewer="carol", marks=marks, verdict="coaching",
                                     notes="客户张伟明 said the agent was rude"))
    [review] = reviews(store, recording_id="a2-3")
    assert review.notes.startswith("客户张伟明") and review.score == 80.0
    assert "张伟明".encode() not in stored_bytes(store.target)
    assert [r.kind for r in audit.records()][-1] == "qa_review"
    with pytest.raises(QaError, match="verdict"):
        save_review(store, audit, Review(recording_id="a2-3", reviewer="c", marks=marks, verdict="great"))
    with pytest.raises(QaError, match="scorecard"):
        save_review(store, audit, Review(recording_id="a2-3", reviewer="c", marks={}, verdict="pass"))
    rows = {c.agent_id: c for c in coverage(store, "2026-11")}
    assert rows["a2"].recordings == 7 and rows["a2"].reviewed == 1 and rows["a2"].flagged == 2
    assert rows["a2"].findings == {"threat": 2} and rows["a2"].mean_score == 80.0
    assert all(c.sampled_rate >= 0.15 for c in rows.values())
    assert rows["a2"].sampled == len([i for i in sample.items if i.agent_id == "a2"])


def test_cli_sample_and_report(db, tmp_path: Path) -> None:
    store, _ = db
    env = {**os.environ, "VOICEBOT_DATA_DIR": str(tmp_path)}
    run = lambda *args: subprocess.run([VOICEBOT, *args, "--db", str(store.target)], capture_output=True,  # noqa: E731
                                       text=True, env=env)
    drawn = run("qa", "sample", "--month", "2026-11", "--json")
    assert drawn.returncode == 0, drawn.stderr
    sample = json.loads(drawn.stdout)
    again = json.loads(run("qa", "sample", "--month", "2026-11", "--seed", str(sample["seed"]), "--json").stdout)
    assert again["items"] == sample["items"]
    report = run("qa", "report", "--month", "2026-11", "--json")
    rows = [json.loads(line) for line in report.stdout.splitlines()]
    assert {r["agent_id"] for r in rows} == set(CALLS) and all(r["sampled_rate"] >= 0.15 for r in rows)
    bad = run("qa", "sample", "--month", "November")
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr
