"""What a customer's reply establishes about the call (the debtor confirmed, a third party is on the line, the debt
is disputed), read by a head on the same encoder from the reply and the agent's line before it."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from compliance_rules.semantic import MODEL_DIR, VECTOR_DIM, Linear, SemanticModelError

REPLY_CLASSES = ("other", "verified", "third_party", "disputed")
"""`other`, or the call state the reply sets."""
REPLY_PRECISION = 0.95
"""Each state's threshold is the lowest score at which cross-validated predictions reach this precision."""
C_REPLIES = 8.0
REPLY_FILES = ("replies.npz", "replies.json")


class RepliesDataError(ValueError):
    """A labelled replies file that cannot be used; names the file and line."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One labelled customer reply: the agent's line before it, the reply, and what it establishes."""

    agent: str
    text: str
    category: str


def read_replies(path: Path) -> list[Reply]:
    """Rows of a TSV with columns agent, text, category (one of REPLY_CLASSES)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=2):
            agent, text = (row.get("agent") or "").strip(), (row.get("text") or "").strip()
            category = (row.get("category") or "").strip()
            if not text or category not in REPLY_CLASSES:
                raise RepliesDataError(f"{path}:{line}: needs a text and a category in {REPLY_CLASSES}")
            out.append(Reply(agent, text, category))
    return out


def reply_features(replies: np.ndarray, agents: np.ndarray) -> np.ndarray:
    """The head's input: the reply's vector, the agent line's vector and their product (what answers what)."""
    return np.hstack([replies, agents, replies * agents]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class ReplyHead:
    """A softmax over REPLY_CLASSES with a minimum score per state, and its version."""

    version: str
    linear: Linear
    thresholds: dict[str, float]

    def states(self, replies: np.ndarray, agents: np.ndarray) -> list[tuple[str, float] | None]:
        """Per reply, the state it sets and the score, or None when it sets none (or not surely enough)."""
        out: list[tuple[str, float] | None] = []
        for row in self.linear.probabilities(reply_features(replies, agents)):
            k = int(np.argmax(row))
            state, score = REPLY_CLASSES[k], float(row[k])
            out.append((state, round(score, 4)) if state != "other" and score >= self.thresholds[state] else None)
        return out

    def save(self, folder: Path, info: dict) -> None:
        """Write replies.npz and replies.json."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / REPLY_FILES[0], coef=self.linear.coef.astype(np.float32),
                            intercept=self.linear.intercept.astype(np.float32))
        meta = {"version": self.version, "classes": list(REPLY_CLASSES), "thresholds": self.thresholds, **info}
        (folder / REPLY_FILES[1]).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path = MODEL_DIR) -> ReplyHead:
        """Read a head saved by `save`; SemanticModelError when it is missing or damaged."""
        try:
            meta = json.loads((folder / REPLY_FILES[1]).read_text(encoding="utf-8"))
            with np.load(folder / REPLY_FILES[0]) as a:
                linear = Linear(a["coef"], a["intercept"])
            thresholds = {state: float(meta["thresholds"][state]) for state in REPLY_CLASSES[1:]}
            version = str(meta["version"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SemanticModelError(f"reply head at {folder} is missing or damaged ({type(e).__name__}); "
                                     "retrain it with `voicebot rules train-model`") from e
        if linear.coef.shape != (len(REPLY_CLASSES), 3 * VECTOR_DIM):
            raise SemanticModelError(f"reply head at {folder} has weights of the wrong shape; retrain it")
        return cls(version, linear, thresholds)


def replies_version(paths: Sequence[Path]) -> str:
    """A version naming the head's kind and the sha256 of the files it was trained on."""
    digest = hashlib.sha256(f"replies C {C_REPLIES} precision {REPLY_PRECISION}".encode())
    for path in paths:
        digest.update(path.read_bytes())
    return f"e5-replies-{digest.hexdigest()[:12]}"


@cache
def bundled_replies() -> ReplyHead:
    """The reply head shipped beside the semantic model, loaded once per process."""
    return ReplyHead.load()
