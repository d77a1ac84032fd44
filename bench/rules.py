"""Rule-engine figures: precision/recall per category on our labelled set, false positives on lawful talk and
on COLD's safe comments, throughput and latency per partial result.

Prints one JSON line per figure. Usage: python bench/rules.py [--pack cn-collection] [--errors]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.figures import emit
from compliance_rules.engine import CallState, RuleEngine
from voicebot.config import load_config

DATA = Path(__file__).resolve().parent.parent / "compliance_rules" / "data"
EVAL_SETS = {
    "cn-collection": [DATA / "cn_agent_eval.tsv", DATA / "cn_agent_holdout.tsv"],
    "us-fdcpa-regf": [DATA / "us_agent_eval.tsv"],
}
"""Per pack: the set the rules were tuned on, then any set written blind (never used for tuning)."""


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a labelled TSV set: text, category (or ok), context."""
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def bench_labelled(engine: RuleEngine, rows: list[dict[str, str]], name: str, show_errors: bool) -> None:
    """Precision and recall per category, and the false-positive rate on lawful rows."""
    tp, fp, fn = Counter(), Counter(), Counter()
    lawful = flagged_lawful = 0
    for row in rows:
        got = {f.category for f in engine.check("agent", row["text"], CallState.of(row["context"] or ""))}
        want = set() if row["category"] == "ok" else {row["category"]}
        for category in got & want:
            tp[category] += 1
        for category in got - want:
            fp[category] += 1
        for category in want - got:
            fn[category] += 1
        if not want:
            lawful += 1
            flagged_lawful += bool(got)
        if show_errors and got != want:
            print(f"# want {sorted(want)} got {sorted(got)} [{row['context']}] {row['text']}", file=sys.stderr)
    for category in sorted(set(tp) | set(fp) | set(fn)):
        emit("precision", tp[category] / max(1, tp[category] + fp[category]), "ratio", input=name, category=category)
        emit("recall", tp[category] / max(1, tp[category] + fn[category]), "ratio", input=name, category=category)
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    emit("precision", total_tp / max(1, total_tp + total_fp), "ratio", input=name, category="all", rows=len(rows))
    emit("recall", total_tp / max(1, total_tp + total_fn), "ratio", input=name, category="all", rows=len(rows))
    emit("false_positive_rate", flagged_lawful / max(1, lawful), "ratio", input=f"{name}: lawful collection talk",
         rows=lawful)


def bench_cold(engine: RuleEngine, shared: Path) -> None:
    """False-positive rate on COLD's comments labelled safe (read in place; evaluation only)."""
    folder = shared / "data" / "cold"
    texts = []
    for path in sorted(folder.rglob("*.csv")):
        with path.open(encoding="utf-8") as f:
            texts += [r["TEXT"] for r in csv.DictReader(f) if r.get("label") == "0" and r.get("TEXT")]
    if not texts:
        return
    flagged = sum(bool(engine.check("agent", t)) for t in texts)
    emit("false_positive_rate", flagged / len(texts), "ratio", input="COLD safe comments", rows=len(texts))


def bench_speed(engine: RuleEngine, rows: list[dict[str, str]]) -> None:
    """Characters per second on whole utterances, and latency per growing partial result."""
    texts = [r["text"] for r in rows] * 5
    started = time.perf_counter()
    for text in texts:
        engine.check("agent", text)
    elapsed = time.perf_counter() - started
    emit("throughput", sum(map(len, texts)) / elapsed, "chars/s")
    latencies = []
    for text in texts[: len(rows)]:
        for end in range(2, len(text) + 1, 2):
            started = time.perf_counter()
            engine.check("agent", text[:end])
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    emit("partial_latency_p50", statistics.median(latencies), "ms")
    emit("partial_latency_p99", latencies[int(len(latencies) * 0.99)], "ms")


def main() -> None:
    """Run every rule-engine figure for a pack."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pack", default="cn-collection")
    parser.add_argument("--errors", action="store_true", help="list misclassified rows on stderr")
    args = parser.parse_args()
    engine = RuleEngine.from_pack(args.pack)
    rows = []
    for path in EVAL_SETS[args.pack]:
        if path.is_file():
            rows += read_rows(path)
            bench_labelled(engine, read_rows(path), path.stem, args.errors)
    if args.pack == "cn-collection":
        bench_cold(engine, load_config().shared_dir)
    bench_speed(engine, rows)


if __name__ == "__main__":
    main()
