"""Training the semantic head: labelled agent utterances → encoder vectors → a softmax head, with thresholds
calibrated for precision on a set written blind (never trained on)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from compliance_rules.engine import CallState, RuleEngine
from compliance_rules.replies import (
    C_REPLIES,
    REPLY_CLASSES,
    REPLY_PRECISION,
    ReplyHead,
    read_replies,
    replies_version,
    reply_features,
)
from compliance_rules.semantic import (
    CONTEXTS,
    NGRAM_OPTIONS,
    STATE_CATEGORIES,
    VECTOR_DIM,
    VECTOR_WEIGHT,
    Encoder,
    Head,
    Linear,
    Ngrams,
    Threshold,
    clean,
    features,
)

TRAIN_DIR = Path(__file__).parent / "data"
REPLIES_DIR = TRAIN_DIR / "replies"
CJK = re.compile(r"[\u3400-\u9fff]")
ACT_PRECISION = 0.97
ALERT_PRECISION = 0.95
ALERT_FLOOR = 0.5
"""The model alerts (or acts) only on a category it rates above all the others together."""
SWAPPED = {"unverified": "third_party", "third_party": "unverified"}
"""Lawful lines in one of these contexts are lawful in the other too."""
VETO_FLOOR = 0.8
"""The model overrules a rule only when it reads the line as lawful at least this surely."""
VETO_PRECISION = 0.85
"""Of the calibration lines whose rule flags the veto overrules, at least this share must be lawful."""
MIN_CALIBRATION_FLAGS = 20
"""A category with fewer calibration flags than this takes the threshold calibrated over all categories."""
C = 64.0
"""Inverse regularisation strength of the head on encoder vectors (4-fold leave-writers-out CV on the training
files chose 64 over 4 and 16, and 64 for the n-gram head over 4 and 16)."""
C_NGRAMS = 64.0
"""Inverse regularisation strength of the head on character n-grams."""
RECIPE = (f"e5 + char 1-3 and word 1-2 n-gram heads, logits pooled {VECTOR_WEIGHT:g}/{1 - VECTOR_WEIGHT:g}; "
          f"C {C:g}/{C_NGRAMS:g}; context copies; alert and act floor {ALERT_FLOOR:g}; thresholds per language, "
          f"own at {MIN_CALIBRATION_FLAGS} flags; rule veto floor {VETO_FLOOR:g}, vetoed lines lawful >= "
          f"{VETO_PRECISION:g}")
"""What the version hashes besides the data, built from the constants above so that changing one changes the
version; edit the words when the way of training changes."""


def language(text: str) -> str:
    """`zh` when the text has a CJK character, else `en`: the language whose thresholds judge it."""
    return "zh" if CJK.search(text) else "en"


class LabelledDataError(ValueError):
    """A labelled file that cannot be used; names the file, the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled agent utterance: its text, its category (`ok` when lawful) and the call's context."""

    text: str
    category: str
    context: str = ""


def read_examples(path: Path) -> list[Example]:
    """Rows of a TSV with columns text, category, context; lines starting with `#` are comments."""
    examples = []
    with path.open(encoding="utf-8") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t", quoting=csv.QUOTE_NONE)
        for line, row in enumerate(rows, start=2):
            text, category = (row.get("text") or "").strip(), (row.get("category") or "").strip()
            context = (row.get("context") or "").strip()
            if not text or not category or context not in CONTEXTS:
                raise LabelledDataError(f"{path}:{line}: needs text, category and a context in {CONTEXTS}")
            if STATE_CATEGORIES.get(category, context) != context:
                raise LabelledDataError(f"{path}:{line}: {category} is labelled only in context "
                                        f"{STATE_CATEGORIES[category]}")
            examples.append(Example(text, category, context))
    return examples


def read_many(paths: Iterable[Path]) -> list[Example]:
    """Examples of several files, each text and context once (the first label wins)."""
    seen: dict[tuple[str, str], Example] = {}
    for path in paths:
        for example in read_examples(path):
            seen.setdefault((clean(example.text), example.context), example)
    return list(seen.values())


class VectorCache:
    """Encoder vectors of texts, kept in one .npy file per text hash so retraining re-encodes only new text."""

    def __init__(self, encoder: Encoder, folder: Path | None) -> None:
        self.encoder, self.folder = encoder, folder

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors (n × VECTOR_DIM) for texts, from the cache where present."""
        keys = [hashlib.sha256(clean(t).encode()).hexdigest()[:24] for t in texts]
        out = np.zeros((len(texts), VECTOR_DIM), dtype=np.float32)
        missing = []
        for i, key in enumerate(keys):
            path = self.folder / f"{key}.npy" if self.folder else None
            if path and path.is_file():
                out[i] = np.load(path)
            else:
                missing.append(i)
        for start in range(0, len(missing), 64):
            batch = missing[start:start + 64]
            out[batch] = self.encoder.embed([texts[i] for i in batch])
            if self.folder:
                self.folder.mkdir(parents=True, exist_ok=True)
                for i in batch:
                    np.save(self.folder / f"{keys[i]}.npy", out[i])
        return out


def augmented(examples: Sequence[Example]) -> list[int]:
    """Indexes of the training rows, plus copies that hold in other contexts: a threat is a threat whatever the
    call's state, and what is lawful to a third party (asking for a callback) is lawful before verification too."""
    rows = list(range(len(examples)))
    for i, e in enumerate(examples):
        if e.category != "ok" and e.category not in STATE_CATEGORIES and not e.context:
            rows += [i] * (len(CONTEXTS) - 1)
        elif e.category == "ok" and e.context in SWAPPED:
            rows.append(i)
    return rows


def with_contexts(examples: Sequence[Example], rows: Sequence[int]) -> list[str]:
    """The context of each augmented row: the example's own, then the other contexts of its copies."""
    copies: dict[int, int] = {}
    contexts = []
    for i in rows:
        n = copies[i] = copies.get(i, -1) + 1
        e = examples[i]
        if n == 0:
            contexts.append(e.context)
        elif e.category == "ok":
            contexts.append(SWAPPED[e.context])
        else:
            contexts.append(CONTEXTS[n])
    return contexts


def fit_heads(vectors: np.ndarray, examples: Sequence[Example], version: str, encoder_sha256: str) -> Head:
    """Both heads fitted on the examples (multinomial logistic regression, classes with `ok` first); thresholds 1.0."""
    rows = augmented(examples)
    contexts = with_contexts(examples, rows)
    vectors, examples = vectors[rows], [dataclasses.replace(examples[i], context=c) for i, c in zip(rows, contexts,
                                                                                                    strict=True)]
    classes = ("ok", *sorted({e.category for e in examples} - {"ok"}))
    y = np.array([classes.index(e.category) for e in examples])
    texts, contexts = [e.text for e in examples], [e.context for e in examples]
    on_vectors = LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
    on_vectors.fit(features(vectors, contexts), y)
    vectorizer = TfidfVectorizer(**NGRAM_OPTIONS, min_df=2)
    on_ngrams = LogisticRegression(C=C_NGRAMS, max_iter=3000, class_weight="balanced")
    on_ngrams.fit(vectorizer.fit_transform(Ngrams.documents(texts, contexts)), y)
    return Head(version, classes, Linear(on_vectors.coef_, on_vectors.intercept_),
                Ngrams(vectorizer.get_feature_names_out().tolist(), vectorizer.idf_),
                Linear(on_ngrams.coef_, on_ngrams.intercept_), {}, encoder_sha256, {})


def calibrate(scores: Sequence[dict[str, float]], examples: Sequence[Example], categories: Sequence[str],
              ) -> dict[str, Threshold]:
    """Per category, the lowest scores at which its flags (the top non-ok class) reach ACT_PRECISION and
    ALERT_PRECISION on the calibration examples."""
    flags = []
    for s, e in zip(scores, examples, strict=True):
        score, category = max((p, c) for c, p in s.items() if c != "ok")
        flags.append((score, category, e.category == category))
    overall = {p: lowest_threshold([(s, hit) for s, _, hit in flags], p) for p in (ACT_PRECISION, ALERT_PRECISION)}
    out = {}
    for category in categories:
        own = [(s, hit) for s, c, hit in flags if c == category]
        pick = {p: lowest_threshold(own, p) if len(own) >= MIN_CALIBRATION_FLAGS else overall[p] for p in overall}
        act = max(pick[ACT_PRECISION], overall[ACT_PRECISION], ALERT_FLOOR)
        out[category] = Threshold(act=round(act, 4), alert=round(min(act, max(pick[ALERT_PRECISION], ALERT_FLOOR)), 4))
    return out


def veto(scores: Sequence[dict[str, float]], examples: Sequence[Example], rules: RuleEngine) -> float:
    """The `ok` score at or above which the model overrules a rule flag: the lowest at which the calibration lines
    it would overrule are lawful at least VETO_PRECISION of the time, and at least VETO_FLOOR. (One violation the
    model reads as surely lawful no longer switches the veto off for all the lawful lines above it.)"""
    flagged = [(s["ok"], e.category == "ok") for s, e in zip(scores, examples, strict=True)
               if any(f.category != "signal" for f in rules.check("agent", e.text, CallState.of(e.context)))]
    return round(max(VETO_FLOOR, lowest_threshold(flagged, VETO_PRECISION)), 4)


def lowest_threshold(flags: Sequence[tuple[float, bool]], precision: float) -> float:
    """The lowest score t such that flags scoring ≥ t are right at least `precision` of the time (1.0 if none)."""
    ranked = sorted(flags, reverse=True)
    best, hits = 1.0, 0
    for n, (score, hit) in enumerate(ranked, start=1):
        hits += hit
        if hits / n >= precision and (n == len(ranked) or ranked[n][0] < score):
            best = score
    return best


def data_version(paths: Sequence[Path]) -> str:
    """A model version naming the head's kind and the sha256 of its recipe and of the files it was trained and
    calibrated on."""
    digest = hashlib.sha256(RECIPE.encode())
    for path in paths:
        digest.update(path.read_bytes())
    return f"e5-head-{digest.hexdigest()[:12]}"


def train_replies(paths: Sequence[Path], cache: VectorCache, out_dir: Path) -> dict:
    """Fit the reply head on labelled replies, with each state's threshold set by 5-fold cross-validated
    predictions (the lowest score reaching REPLY_PRECISION), and save it to `out_dir`."""
    replies = list({(clean(r.agent), clean(r.text)): r for p in paths for r in read_replies(p)}.values())
    x = reply_features(cache.vectors([r.text for r in replies]), cache.vectors([r.agent for r in replies]))
    y = np.array([REPLY_CLASSES.index(r.category) for r in replies])
    fit = LogisticRegression(C=C_REPLIES, max_iter=3000, class_weight="balanced")
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    p = cross_val_predict(fit, x, y, cv=folds, method="predict_proba")
    thresholds = {}
    for k, state in enumerate(REPLY_CLASSES[1:], start=1):
        said = [(float(row[k]), y[i] == k) for i, row in enumerate(p) if int(np.argmax(row)) == k]
        thresholds[state] = round(lowest_threshold(said, REPLY_PRECISION), 4)
    fit.fit(x, y)
    head = ReplyHead(replies_version(paths), Linear(fit.coef_, fit.intercept_), thresholds)
    head.save(out_dir, {"trained_on": {p.name: len(read_replies(p)) for p in paths}, "rows": len(replies)})
    return {"version": head.version, "rows": len(replies), "thresholds": thresholds}


def train(train_paths: Sequence[Path], calibration_paths: Sequence[Path], out_dir: Path,
          rules: Mapping[str, RuleEngine], *, held_out: Set[str] = frozenset(), reply_paths: Sequence[Path] = (),
          cache_dir: Path | None = None) -> dict:
    """Train the head on `train_paths`, calibrate its thresholds and its veto over `rules` (language → engine) on
    `calibration_paths`, and the reply head on `reply_paths`; save them to `out_dir`; return what was done (rows,
    classes, thresholds, vetoes, versions). A training row whose text is in `held_out` (cleaned) is left out."""
    examples = [e for e in read_many(train_paths) if clean(e.text) not in held_out]
    calibration = read_many(calibration_paths)
    encoder = Encoder()
    cache = VectorCache(encoder, cache_dir)
    replies = train_replies(reply_paths, cache, out_dir) if reply_paths else None
    version = data_version([*train_paths, *calibration_paths])
    head = fit_heads(cache.vectors([e.text for e in examples]), examples, version, encoder.sha256)
    texts, contexts = [e.text for e in calibration], [e.context for e in calibration]
    p = head.probabilities(cache.vectors(texts), texts, contexts)
    scores = [dict(zip(head.classes, map(float, row), strict=True)) for row in p]
    by_language: dict[str, list[int]] = {}
    for i, e in enumerate(calibration):
        by_language.setdefault(language(e.text), []).append(i)
    thresholds = {lang: calibrate([scores[i] for i in rows], [calibration[i] for i in rows], head.classes[1:])
                  for lang, rows in sorted(by_language.items())}
    vetoes = {lang: veto([scores[i] for i in rows], [calibration[i] for i in rows], rules[lang])
              for lang, rows in sorted(by_language.items()) if lang in rules}
    head = dataclasses.replace(head, thresholds=thresholds, vetoes=vetoes)
    info = {"trained_on": {p.name: len(read_examples(p)) for p in train_paths},
            "calibrated_on": {p.name: len(read_examples(p)) for p in calibration_paths},
            "rows": len(examples), "held_out_texts": len(held_out), "C": C, "C_ngrams": C_NGRAMS}
    head.save(out_dir, info)
    return {"version": version, "rows": len(examples), "classes": list(head.classes), "replies": replies,
            "vetoes": vetoes,
            "thresholds": {lang: {c: [t.act, t.alert] for c, t in by_category.items()}
                           for lang, by_category in head.thresholds.items()}}
