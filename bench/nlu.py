"""NLU figures: held-out accuracy of the intent models (small BERT, n-gram, n-gram with sentence vectors), all and
English; their accuracy on the thano corpus (mapped to our intents), on the tts-cmn customer lines' Vosk transcripts
and on the blind English reply sets (bench/data/blind/replies*_en.tsv, written by writers who saw neither our data
nor our rules, frozen by sha256); per-intent held-out recall; how often the blind sets' dates and amounts are read
right; training time; and each model's latency per utterance (classify() with slots, one reply at a time).

Prints one JSON line per figure. Usage: python bench/nlu.py [--errors]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.figures import frozen
from voicebot.config import load_config
from voicebot.nlu.classify import IntentClassifier, ModelInfo
from voicebot.nlu.data import Example, load_labelled, load_thano, load_tts_customer, split_heldout
from voicebot.nlu.evaluate import accuracy_figure, accuracy_figures, predictions
from voicebot.nlu.slots import extract_slots
from voicebot.nlu.train import KINDS, install_tokenizer, train_models

CORES = os.cpu_count()
LATENCY_REPEATS = 3
BLIND = Path(__file__).resolve().parent / "data" / "blind"
BLIND_TODAY = date(2026, 12, 4)
"""The day the blind sets' writers were told the call takes place on."""


def emit(row: dict[str, object]) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps({**row, "cores": CORES}, ensure_ascii=False), flush=True)


def main() -> None:
    """Train both kinds on the training part, then measure them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="Also print each misclassified evaluation reply.")
    args = parser.parse_args()
    config = load_config()
    train, heldout = split_heldout(load_labelled())
    models, seconds = train_models(train, install_tokenizer(config.models_dir, config.shared_dir))
    accuracies = {}
    for kind in KINDS:
        emit({"metric": f"{kind}_train_time", "value": seconds[kind], "unit": "s", "n": len(train),
              "input": "nlu/data/intents.tsv training 80%"})
        for row in accuracy_figures(models[kind], kind, config.shared_dir, recall=True):
            emit(row)
            if row["metric"] == f"{kind}_heldout_accuracy":
                accuracies[kind] = row["value"]
        for path, rows in blind_sets().items():
            emit(accuracy_figure(models[kind], f"{kind}_{path.stem}_accuracy", [e for e, _, _ in rows],
                                 f"bench/data/blind/{path.name} (blind)"))
    for path, rows in blind_sets().items():
        slot_figures(path, rows)
    kept = max(accuracies, key=lambda kind: (accuracies[kind], kind == "ngram"))
    emit({"metric": "kept_model", "value": KINDS.index(kept), "unit": f"index in {list(KINDS)}: {kept}",
          "input": "best held-out accuracy"})
    for kind in sorted(KINDS, key=lambda k: k != kept):  # the kept model first
        latency(IntentClassifier(models[kind], ModelInfo(kind, tuple(models[kind].labels), accuracies)), kind,
                [e.text for e in heldout])
    if args.errors:
        for name, examples in (("heldout", heldout), ("thano", load_thano(config.shared_dir)),
                               ("tts_vosk", load_tts_customer(config.shared_dir))):
            for predicted, e in zip(predictions(models[kept], examples), examples, strict=True):
                if predicted != e.intent:
                    print(f"# {name}\t{e.intent}\t{predicted}\t{e.text}", file=sys.stderr)


def blind_sets() -> dict[Path, list[tuple[Example, str, str]]]:
    """Each frozen blind reply set: (reply, expected date ISO, expected amount) per line, '?' where not scored."""
    sets = {}
    for path in sorted(BLIND.glob("replies*_en.tsv")):
        with frozen(path).open(encoding="utf-8", newline="") as f:
            sets[path] = [(Example(r["text"], r["intent"]), r["date"], r["amount"])
                          for r in csv.DictReader(f, delimiter="\t")]
    return sets


def slot_figures(path: Path, rows: list[tuple[Example, str, str]]) -> None:
    """How often a blind set's dates (all replies, and promises and callbacks) and amounts are read right."""
    slots = [extract_slots(e.text, BLIND_TODAY) for e, _, _ in rows]
    both = list(zip(slots, rows, strict=True))
    dates = [(s.date.isoformat() if s.date else "", want, e.intent) for s, (e, want, _) in both if want != "?"]
    amounts = [(s.amount, Decimal(want) if want else None) for s, (_, _, want) in both if want != "?"]
    promised = [d for d in dates if d[2] in ("promise_to_pay", "callback")]
    for metric, pairs in ((f"date_{path.stem}_accuracy", dates),
                          (f"date_promise_callback_{path.stem}_accuracy", promised),
                          (f"amount_{path.stem}_accuracy", amounts)):
        right = sum(pair[0] == pair[1] for pair in pairs)
        emit({"metric": metric, "value": round(right / len(pairs), 4), "unit": "ratio", "n": len(pairs),
              "input": f"bench/data/blind/{path.name} (blind), slots.extract_slots"})


def latency(classifier: IntentClassifier, kind: str, texts: list[str]) -> None:
    """p50 and p95 wall time of classify() on one reply, slots included."""
    today = date.today()
    classifier.classify(texts[0], today)  # warm up
    times = []
    for _ in range(LATENCY_REPEATS):
        for text in texts:
            started = time.perf_counter()
            classifier.classify(text, today)
            times.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(times, n=100)
    for name, value in (("p50", cuts[49]), ("p95", cuts[94])):
        emit({"metric": f"{kind}_latency_{name}", "value": round(value, 3), "unit": "ms", "n": len(times),
              "input": "held-out replies, classify() one at a time"})


if __name__ == "__main__":
    main()
