"""Classify customer replies with the installed intent model, and pull out their date and amount."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from voicebot.nlu import INTENTS, Intent, Understanding
from voicebot.nlu.data import normalize
from voicebot.nlu.slots import extract_slots
from voicebot.nlu.train import KINDS, META_FILE, MODEL_NAME, IntentModel


class IntentModelMissingError(FileNotFoundError):
    """No trained intent model is installed in the models folder."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the installed model's metadata says about it."""

    kind: str
    labels: tuple[str, ...]
    heldout_accuracy: dict[str, float]


class IntentClassifier:
    """The installed intent model behind `classify(text, today) -> Understanding`."""

    def __init__(self, model: IntentModel, info: ModelInfo) -> None:
        self.model = model
        self.info = info

    @classmethod
    def load(cls, models_dir: Path) -> IntentClassifier:
        """Load <models>/nlu-intent; raise IntentModelMissingError saying how to make one."""
        folder = models_dir / MODEL_NAME
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            kind = meta["kind"]
        except (OSError, ValueError, KeyError) as e:
            raise IntentModelMissingError(
                f"no intent model in {folder}; run `voicebot nlu train` (or `make models`)") from e
        labels = tuple(meta.get("labels", ()))
        if kind not in KINDS or not set(labels) <= set(INTENTS):
            raise IntentModelMissingError(f"{folder / META_FILE} names an unknown model kind or intents; "
                                          "run `voicebot nlu train` again")
        model: IntentModel
        if kind == "bert":
            from voicebot.nlu.bert import BertModel
            model = BertModel.load(folder)
        elif kind == "sentence":
            from voicebot.nlu.sentence import SentenceModel
            model = SentenceModel.load(folder)
        else:
            from voicebot.nlu.ngram import NgramModel
            model = NgramModel.load(folder)
        return cls(model, ModelInfo(kind=kind, labels=labels, heldout_accuracy=meta.get("heldout_accuracy", {})))

    def classify(self, text: str, today: date) -> Understanding:
        """One reply's intent (confidence: the model's probability), date and amount."""
        return self.classify_many([text], today)[0]

    def classify_many(self, texts: list[str], today: date) -> list[Understanding]:
        """Several replies at once (faster than one by one); an empty reply is `other`."""
        spoken = [i for i, t in enumerate(texts) if normalize(t)]
        probabilities = self.model.predict_proba([texts[i] for i in spoken])
        results = [Understanding(text=t, intent="other", confidence=1.0, slots=extract_slots(t, today))
                   for t in texts]
        for row, i in zip(probabilities, spoken, strict=True):
            best = int(row.argmax())
            intent: Intent = self.model.labels[best]  # type: ignore[assignment]
            results[i] = Understanding(text=texts[i], intent=intent, confidence=round(float(row[best]), 4),
                                       slots=results[i].slots)
        return results


def understanding_json(understanding: Understanding) -> dict[str, Any]:
    """The JSON shape `voicebot nlu classify` prints: text, intent, confidence, slots {date ISO, amount string}."""
    slots = understanding.slots
    return {
        "text": understanding.text,
        "intent": understanding.intent,
        "confidence": understanding.confidence,
        "slots": {"date": slots.date.isoformat() if slots.date else None,
                  "amount": str(slots.amount) if slots.amount is not None else None},
    }
