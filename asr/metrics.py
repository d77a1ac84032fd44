"""Character error rate for Mandarin transcripts and word error rate for English ones, as the benchmarks and tests
compute them."""

from __future__ import annotations

import re
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


def normalize_for_wer(text: str) -> str:
    """Lower case, hyphens as spaces, apostrophes kept, other punctuation dropped."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Total word edits over total reference words, after normalisation."""
    return jiwer.wer([normalize_for_wer(r) for r in references], [normalize_for_wer(h) for h in hypotheses])
