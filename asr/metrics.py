"""Character error rate for Mandarin transcripts, as the benchmarks and tests compute it."""

from __future__ import annotations

import unicodedata

import cn2an
import jiwer


def normalize_for_cer(text: str) -> str:
    """Arabic numerals read out in Chinese; punctuation, symbols and whitespace removed."""
    text = cn2an.transform(text, "an2cn")
    return "".join(c for c in text if unicodedata.category(c)[0] not in "PSZ" and not c.isspace())


def character_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Total character edits over total reference characters, after normalisation."""
    refs = [normalize_for_cer(r) for r in references]
    hyps = [normalize_for_cer(h) for h in hypotheses]
    return jiwer.cer(refs, hyps)
