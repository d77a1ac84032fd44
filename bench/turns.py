"""End-of-turn figures for the bot: how often a finished reply is answered at the short pause, and how often an
unfinished one is cut off there, with the installed intent model (stages/understand.py's complete_reply).

Blind: bench/data/blind/turns*.tsv (replies split at a pause by a writer who never saw the NLU data). Tuned: the
NLU's own training replies, whole (finished) and cut at half and three quarters of their characters (unfinished).
A cut-off counts as harmful when the whole reply means something else or names another date or amount.

Prints one JSON line per figure. Usage: python bench/turns.py [--errors]
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import date
from pathlib import Path

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from asr.vosk_engine import join_words
from bench.figures import emit
from voicebot.config import load_config
from voicebot.nlu.classify import IntentClassifier
from voicebot.nlu.data import load_labelled
from voicebot.stages.understand import complete_reply

BLIND = Path(__file__).resolve().parent / "data" / "blind"
TODAY = date(2026, 12, 4)
CUTS = (0.5, 0.75)


def blind_rows(path: Path) -> list[tuple[str, str, str]]:
    """(language, first part, rest) of each reply in a blind turns set; rest is empty for a finished reply."""
    with path.open(encoding="utf-8", newline="") as f:
        return [(r["language"], r["first"].strip(), r["rest"].strip()) for r in csv.DictReader(f, delimiter="\t")]


def tuned_rows() -> list[tuple[str, str, str]]:
    """The NLU training replies, whole and cut part-way."""
    rows = []
    for example in load_labelled():
        text = example.text
        language = "en" if text.isascii() else "zh"
        rows.append((language, text, ""))
        rows += [(language, text[: int(len(text) * cut)], text[int(len(text) * cut):]) for cut in CUTS
                 if 2 <= int(len(text) * cut) < len(text)]
    return rows


def figures(classifier: IntentClassifier, rows: list[tuple[str, str, str]], source: str, errors: bool) -> None:
    """Finished replies answered at the pause; unfinished ones cut off there (all, and harmfully)."""
    for language in ("zh", "en"):
        mine = [r for r in rows if r[0] == language]
        firsts = classifier.classify_many([r[1] for r in mine], TODAY)
        wholes = classifier.classify_many([join_words([r[1], r[2]]) if r[2] else r[1] for r in mine], TODAY)
        finished = [early for early, r in zip(map(complete_reply, firsts), mine, strict=True) if not r[2]]
        cut = [(f, w, r) for f, w, r in zip(firsts, wholes, mine, strict=True) if r[2] and complete_reply(f)]
        harmful = [(f, w, r) for f, w, r in cut if (f.intent, f.slots) != (w.intent, w.slots)]
        unfinished = sum(1 for r in mine if r[2])
        for metric, hits, total in (("finished_answered_at_pause", sum(finished), len(finished)),
                                    ("unfinished_cut_off", len(cut), unfinished),
                                    ("unfinished_cut_off_harmfully", len(harmful), unfinished)):
            emit(metric, round(hits / max(1, total), 3), "fraction", n=total, language=language, input=source)
        if errors:
            for f, w, r in harmful:
                print(f"# {source}\t{r[1]} | {r[2]}\t{f.intent} → {w.intent}", file=sys.stderr)


def main() -> None:
    """Measure the installed model on every blind turns set, then on the tuned replies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="Also print each harmful cut-off.")
    args = parser.parse_args()
    classifier = IntentClassifier.load(load_config().models_dir)
    for path in sorted(BLIND.glob("turns*.tsv")):
        figures(classifier, blind_rows(path), f"blind {path.name}", args.errors)
    figures(classifier, tuned_rows(), "tuned: nlu/data/intents.tsv", args.errors)


if __name__ == "__main__":
    main()
