"""NLU figures: held-out accuracy of both intent models (small BERT, n-gram), their accuracy on the thano corpus
(mapped to our intents) and on the tts-cmn customer lines' Vosk transcripts, per-intent held-out recall, training
time, and each model's latency per utterance (classify() with slots, one reply at a time).

Prints one JSON line per figure. Usage: python bench/nlu.py [--errors]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from voicebot.config import load_config
from voicebot.nlu.classify import IntentClassifier, ModelInfo
from voicebot.nlu.data import load_labelled, load_thano, load_tts_customer, split_heldout
from voicebot.nlu.evaluate import accuracy_figures, predictions
from voicebot.nlu.train import KINDS, install_tokenizer, train_models

CORES = os.cpu_count()
LATENCY_REPEATS = 3


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
