"""Blind sets and training data kept apart: the texts of every frozen blind set (never trained on), and retiring a
studied blind set into the training data (its agent lines as examples)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from compliance_rules.semantic import clean
from compliance_rules.training import TRAIN_DIR, Example, LabelledDataError, read_examples

RETIRED_PREFIX = "retired_"


def read_calls(path: Path) -> list[Example]:
    """A whole-call set's agent lines as examples, each in the state its writer gave it.

    Its customer replies are not made reply examples: whole-call writers count a bare "yes, that's me" as not yet
    verified, the reply data as verified, and mixing the two raised the verified threshold from 0.80 to 0.98 and
    the verified state's false alarms on held-out calls from 4.7% to 7.1%."""
    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            examples += [Example(t["text"], t["label"], "" if t["state"] == "verified" else t["state"])
                         for t in json.loads(line)["lines"] if t["leg"] == "agent"]
        except (ValueError, KeyError, TypeError) as e:
            raise LabelledDataError(f"{path}:{n}: not a call with agent and customer lines ({e!r})") from e
    return examples


def held_out_texts(paths: Iterable[Path]) -> set[str]:
    """The cleaned agent texts of blind sets (TSV rows, agent lines of whole-call JSONL sets): no training row may
    repeat one."""
    return {clean(e.text) for path in paths
            for e in (read_calls(path) if path.suffix == ".jsonl" else read_examples(path))}


def retire(path: Path, data_dir: Path = TRAIN_DIR) -> Path:
    """Copy a studied blind set's agent lines into the training data as retired_<name>.tsv; return that file. Its
    texts stop being held out once its frozen copy is removed from the blind sets."""
    out = data_dir / f"{RETIRED_PREFIX}{path.stem}.tsv"
    examples = read_calls(path) if path.suffix == ".jsonl" else read_examples(path)
    write_tsv(out, ("text", "category", "context"), [(e.text, e.category, e.context) for e in examples])
    read_examples(out)  # what was written must read back as training data
    return out


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A tab-separated file with `header`; tabs and newlines inside a value become spaces."""
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        out.writerow(header)
        out.writerows([" ".join(v.split()) for v in row] for row in rows)
