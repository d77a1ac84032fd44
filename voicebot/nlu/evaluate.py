"""Accuracy figures for an intent model: our held-out part, the thano corpus and the tts-cmn Vosk transcripts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from voicebot.nlu.data import DATA_FILE, Example, load_labelled, load_thano, load_tts_customer, normalize, split_heldout
from voicebot.nlu.slots import CJK
from voicebot.nlu.train import IntentModel


def predictions(model: IntentModel, examples: list[Example]) -> list[str]:
    """The most probable intent for each example."""
    if not examples:
        return []
    return [model.labels[i] for i in model.predict_proba([e.text for e in examples]).argmax(axis=1)]


def figure(metric: str, value: float, examples: int, source: str, unit: str = "ratio") -> dict[str, Any]:
    """One JSON figure, in the shape the benchmarks print."""
    return {"metric": metric, "value": round(value, 4), "unit": unit, "n": examples, "input": source}


def accuracy_figures(model: IntentModel, name: str, shared_dir: Path, data_path: Path = DATA_FILE,
                     recall: bool = False) -> list[dict[str, Any]]:
    """Held-out accuracy (all, English; and per-intent recall), thano accuracy (all mapped rows, without `other`,
    and without rows whose text is also in our training part), and accuracy on the tts-cmn customer lines (Vosk and
    clean)."""
    train, heldout = split_heldout(load_labelled(data_path))
    english = [e for e in heldout if not CJK.search(e.text)]
    out = [accuracy_figure(model, f"{name}_heldout_accuracy", heldout, "nlu/data/intents.tsv held-out 20%"),
           accuracy_figure(model, f"{name}_heldout_en_accuracy", english, "the English replies of the held-out 20%")]
    if recall:
        out += _recalls(model, name, heldout)
    seen = {normalize(e.text) for e in train}
    thano = load_thano(shared_dir)
    out += [
        accuracy_figure(model, f"{name}_thano_accuracy", thano, "cuishou_nlu_thano mapped"),
        accuracy_figure(model, f"{name}_thano_core_accuracy", [e for e in thano if e.intent != "other"],
                  "cuishou_nlu_thano mapped, without other"),
        accuracy_figure(model, f"{name}_thano_unseen_accuracy", [e for e in thano if normalize(e.text) not in seen],
                  "cuishou_nlu_thano mapped, texts not in our training part"),
        accuracy_figure(model, f"{name}_tts_vosk_accuracy", load_tts_customer(shared_dir),
                  "tts-cmn customer lines, Vosk transcripts"),
        accuracy_figure(model, f"{name}_tts_text_accuracy", load_tts_customer(shared_dir, "text"),
                  "tts-cmn customer lines, written text"),
    ]
    return out


def accuracy_figure(model: IntentModel, metric: str, examples: list[Example], source: str) -> dict[str, Any]:
    """The share of `examples` whose most probable intent is the labelled one, as a figure."""
    predicted = predictions(model, examples)
    right = sum(p == e.intent for p, e in zip(predicted, examples, strict=True))
    return figure(metric, right / len(examples) if examples else 0.0, len(examples), source)


def _recalls(model: IntentModel, name: str, examples: list[Example]) -> list[dict[str, Any]]:
    predicted = predictions(model, examples)
    totals = Counter(e.intent for e in examples)
    right = Counter(e.intent for p, e in zip(predicted, examples, strict=True) if p == e.intent)
    return [figure(f"{name}_heldout_recall_{intent}", right[intent] / totals[intent], totals[intent],
                   "nlu/data/intents.tsv held-out 20%") for intent in sorted(totals)]
