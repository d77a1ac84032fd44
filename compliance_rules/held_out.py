"""Blind sets and training data kept apart: the texts of every frozen blind set (never trained on), and retiring a
studied blind set into the training data (agent lines as examples; a whole-call set's replies as reply examples)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from compliance_rules.replies import REPLY_CLASSES, Reply
from compliance_rules.semantic import clean
from compliance_rules.training import REPLIES_DIR, TRAIN_DIR, Example, LabelledDataError, read_examples

RETIRED_PREFIX = "retired_"


def read_calls(path: Path) -> tuple[list[Example], list[Reply]]:
    """A whole-call set's agent lines as examples (in the state its writer gave them) and its customer replies,
    each labelled with the state the writer's next agent line is in when that differs (`other` when not)."""
    examples, replies = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            turns = json.loads(line)["lines"]
            state, agent = "unverified", ""
            for i, turn in enumerate(turns):
                if turn["leg"] == "agent":
                    state, agent = turn["state"], turn["text"]
                    examples.append(Example(turn["text"], turn["label"], "" if state == "verified" else state))
                    continue
                after = next((t["state"] for t in turns[i + 1:] if t["leg"] == "agent"), state)
                replies.append(Reply(agent, turn["text"], after if after != state and after in REPLY_CLASSES
                                     else "other"))
        except (ValueError, KeyError, TypeError) as e:
            raise LabelledDataError(f"{path}:{n}: not a call with agent and customer lines ({e!r})") from e
    return examples, replies


def held_out_texts(paths: Iterable[Path]) -> set[str]:
    """The cleaned agent texts of blind sets (TSV rows, agent lines of whole-call JSONL sets): no training row may
    repeat one."""
    return {clean(e.text) for path in paths
            for e in (read_calls(path)[0] if path.suffix == ".jsonl" else read_examples(path))}


def retire(path: Path, data_dir: Path = TRAIN_DIR, replies_dir: Path = REPLIES_DIR) -> list[Path]:
    """Copy a studied blind set into the training data as retired_<name>.tsv (and its replies into the reply data);
    return the files written. Its texts stop being held out once its frozen copy is removed from the blind sets."""
    name = f"{RETIRED_PREFIX}{path.stem}.tsv"
    if path.suffix == ".jsonl":
        examples, replies = read_calls(path)
        write_tsv(replies_dir / name, ("agent", "text", "category"), [(r.agent, r.text, r.category) for r in replies])
    else:
        examples = read_examples(path)
    write_tsv(data_dir / name, ("text", "category", "context"), [(e.text, e.category, e.context) for e in examples])
    read_examples(data_dir / name)  # what was written must read back as training data
    return [data_dir / name] + ([replies_dir / name] if path.suffix == ".jsonl" else [])


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A tab-separated file with `header`; tabs and newlines inside a value become spaces."""
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        out.writerow(header)
        out.writerows([" ".join(v.split()) for v in row] for row in rows)
