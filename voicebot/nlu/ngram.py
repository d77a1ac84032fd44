"""The n-gram intent model: TF-IDF over character 1-3-grams and over toneless pinyin 1-2-grams, then a logistic
regression (scikit-learn). The pinyin view makes ASR homophones (还款/换款) look alike."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from pypinyin import lazy_pinyin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from voicebot.nlu.data import Example, normalize

MODEL_FILE = "ngram.joblib"


def pinyin_words(text: str) -> str:
    """Normalised text as toneless pinyin syllables (English words pass through), space-separated."""
    return " ".join(lazy_pinyin(text))


def build_pipeline(seed: int = 0, c: float = 20.0) -> Pipeline:
    """The untrained pipeline: its input is text already `normalize`d."""
    features = FeatureUnion([
        ("chars", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)),
        ("pinyin", TfidfVectorizer(preprocessor=pinyin_words, token_pattern=r"[a-z0-9']+", ngram_range=(1, 2),
                                   sublinear_tf=True)),
    ])
    return Pipeline([("features", features), ("clf", LogisticRegression(C=c, max_iter=3000, random_state=seed))])


class NgramModel:
    """A fitted n-gram pipeline and its label order."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.labels = [str(label) for label in pipeline.classes_]

    @classmethod
    def train(cls, examples: list[Example], seed: int = 0) -> NgramModel:
        """Fit on labelled examples; deterministic for a given seed."""
        pipeline = build_pipeline(seed)
        pipeline.fit([normalize(e.text) for e in examples], [e.intent for e in examples])
        return cls(pipeline)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """One row of probabilities per text, columns in `self.labels` order."""
        if not texts:
            return np.zeros((0, len(self.labels)))
        return self.pipeline.predict_proba([normalize(t) for t in texts])

    def save(self, folder: Path) -> None:
        """Write the fitted pipeline into `folder`."""
        joblib.dump(self.pipeline, folder / MODEL_FILE)

    @classmethod
    def load(cls, folder: Path) -> NgramModel:
        """Read a pipeline saved by `save` (our own file only: unpickling runs code from what it loads)."""
        return cls(joblib.load(folder / MODEL_FILE))
