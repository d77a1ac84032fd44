"""Labelled customer replies: our own training set, its fixed held-out split, and the evaluation-only sets."""

from __future__ import annotations

import csv
import hashlib
import random
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from voicebot.nlu import INTENTS, Intent

DATA_FILE = Path(__file__).resolve().parent / "data" / "intents.tsv"
THANO_FILE = Path("data") / "cuishou_nlu_thano" / "nlu_utterances_dedup.csv"
TTS_TRANSCRIPTS = Path("audio") / "tts-cmn" / "transcripts.tsv"
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 20240605

THANO_TO_INTENT: dict[str, Intent] = {
    "id_yes": "identity_confirmed",
    "id_no": "wrong_person", "contacts_dont_know": "wrong_person", "dead": "wrong_person", "missing": "wrong_person",
    "busy": "callback", "busy_break": "callback",
    "complain": "complaint", "complain_break": "complaint",
    "will_repay": "promise_to_pay", "will_repay_date": "promise_to_pay",
    "cant_repay": "hardship", "installment": "hardship", "negotiation": "hardship",
    "already_repay": "already_paid",
    "bill_dispute": "dispute",
    "which_card": "other", "amount": "other", "how_to_repay": "other", "phone_notification": "other",
    "cant_use": "other", "robot": "other", "overdue_confirm": "other", "interest": "other", "detail": "other",
    "minimum_payment": "other", "repayment_date": "other", "customer_service": "other",
    "already_contact_service": "other",
}
"""The thano corpus's labels mapped to ours. Left out: its yes/no follow-up sheets (do_/dont_check_bill,
check_/cant_repay_date, negotiation_success/failure, do_/don_confirm_bill) and contacts_know, whose short answers
("可以", "对", "嗯") mean something only after the question they answer."""


class LabelledDataError(ValueError):
    """A labelled-utterance file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled customer reply."""

    text: str
    intent: Intent


def normalize(text: str) -> str:
    """Text as the classifiers see it: NFKC, lower case, no punctuation, no spaces between Chinese characters."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" and c != "'" else c for c in text)
    text = re.sub(r"\s*([^\x00-\x7f])\s*", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def load_labelled(path: Path = DATA_FILE) -> list[Example]:
    """Read a tab-separated `intent<TAB>text` file with that header; every intent must be one of ours."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LabelledDataError(f"cannot read labelled utterances from {path}: {e}") from e
    if not lines or lines[0].split("\t") != ["intent", "text"]:
        raise LabelledDataError(f"{path}:1: the header must be 'intent<TAB>text'")
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        intent, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise LabelledDataError(f"{path}:{number}: expected 'intent<TAB>text'")
        if intent not in INTENTS:
            raise LabelledDataError(f"{path}:{number}: unknown intent {intent!r}; use one of {', '.join(INTENTS)}")
        examples.append(Example(text.strip(), intent))  # type: ignore[arg-type]
    return examples


def file_digest(path: Path = DATA_FILE) -> str:
    """The sha256 of a data file, recorded with a trained model."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_heldout(examples: list[Example], fraction: float = HELDOUT_FRACTION,
                  seed: int = SPLIT_SEED) -> tuple[list[Example], list[Example]]:
    """A stratified, seeded split into (train, held-out): the same `fraction` of each intent is held out."""
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    train, heldout = [], []
    for intent in sorted(by_intent):
        group = by_intent[intent][:]
        random.Random(f"{seed}:{intent}").shuffle(group)  # one stream per intent: adding to one moves no other
        cut = round(len(group) * fraction)
        heldout += group[:cut]
        train += group[cut:]
    return train, heldout


def load_thano(shared_dir: Path) -> list[Example]:
    """The thano collection-robot corpus (evaluation only, read in place), mapped to our intents, deduplicated."""
    path = shared_dir / THANO_FILE
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise LabelledDataError(f"cannot read {path}: {e}; set VOICEBOT_SHARED_DIR to the shared folder") from e
    seen: set[tuple[str, str]] = set()
    examples = []
    for row in rows:
        intent = THANO_TO_INTENT.get(row.get("label", ""))
        key = (intent or "", normalize(row.get("text", "")))
        if intent and key[1] and key not in seen:
            seen.add(key)
            examples.append(Example(row["text"], intent))
    return examples


def load_tts_customer(shared_dir: Path, column: str = "vosk_transcript") -> list[Example]:
    """The customer utterances of shared/audio/tts-cmn: their Vosk transcripts (or `text`) with their intents."""
    path = shared_dir / TTS_TRANSCRIPTS
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as e:
        raise LabelledDataError(f"cannot read {path}: {e}; set VOICEBOT_SHARED_DIR to the shared folder") from e
    return [Example(row[column], row["label"]) for row in rows  # type: ignore[misc]
            if row.get("role") == "customer" and row.get("label") in INTENTS]
