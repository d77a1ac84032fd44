"""The sentence intent model: the n-gram model's TF-IDF features beside the sentence vector of multilingual-e5-small
(the semantic detector's encoder, one per process), then one logistic regression. The vector carries what a reply
means when its wording is not one the training set used."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

from compliance_rules.semantic import Encoder, encoder_weights, sha256_file, shared_encoder
from voicebot.nlu.data import Example, normalize
from voicebot.nlu.ngram import build_pipeline

MODEL_FILE = "sentence.joblib"
ENCODER_FILE = "encoder.json"
VECTOR_WEIGHT = 2.0
"""How much the sentence vector weighs beside the n-gram features (chosen on the held-out part)."""


class SentenceModel:
    """Fitted n-gram features, the encoder, and the regression over both."""

    def __init__(self, features: FeatureUnion, classifier: LogisticRegression, encoder: Encoder) -> None:
        self.features = features
        self.classifier = classifier
        self.encoder = encoder
        self.labels = [str(label) for label in classifier.classes_]

    @classmethod
    def train(cls, examples: list[Example], seed: int = 0) -> SentenceModel:
        """Fit on labelled examples; deterministic for a given seed."""
        pipeline = build_pipeline(seed)
        features, classifier = pipeline.named_steps["features"], pipeline.named_steps["clf"]
        encoder = shared_encoder(sha256_file(encoder_weights()))
        texts = [e.text for e in examples]
        grams = features.fit_transform([normalize(t) for t in texts])
        classifier.set_params(max_iter=5000)
        classifier.fit(_beside(grams, encoder.embed(texts)), [e.intent for e in examples])
        return cls(features, classifier, encoder)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """One row of probabilities per text, columns in `self.labels` order."""
        if not texts:
            return np.zeros((0, len(self.labels)))
        grams = self.features.transform([normalize(t) for t in texts])
        return self.classifier.predict_proba(_beside(grams, self.encoder.embed(texts)))

    def save(self, folder: Path) -> None:
        """Write the fitted features and regression, and the sha256 of the encoder they were fitted with."""
        joblib.dump((self.features, self.classifier), folder / MODEL_FILE)
        (folder / ENCODER_FILE).write_text(json.dumps({"encoder_sha256": self.encoder.sha256}), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SentenceModel:
        """Read a model saved by `save` (our own file only: unpickling runs code from what it loads); the installed
        encoder must be the one it was trained with."""
        features, classifier = joblib.load(folder / MODEL_FILE)
        expected = json.loads((folder / ENCODER_FILE).read_text(encoding="utf-8"))["encoder_sha256"]
        return cls(features, classifier, shared_encoder(expected))


def _beside(grams: sparse.spmatrix, vectors: np.ndarray) -> sparse.csr_matrix:
    return sparse.hstack([grams, sparse.csr_matrix(vectors * VECTOR_WEIGHT)]).tocsr()
