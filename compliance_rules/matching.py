"""Text matching that survives ASR output: Simplified/full-width/spacing normalisation and homophone keys."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import ahocorasick
import opencc
from pypinyin import lazy_pinyin

_T2S = opencc.OpenCC("t2s")
_PUA_BASE = 0xE000
_FUNCTION_CHARS = frozenset("你您我他她它们的了是吗呢吧啊")
MIN_HOMOPHONE_SYLLABLES = 3
"""A phrase matches by sound only with this many content syllables (坐牢了 yes, 每隔 no) unless forced."""


@dataclass(frozen=True, slots=True)
class Normalized:
    """Text reduced for matching, with the original offset of every kept character."""

    text: str
    index: tuple[int, ...]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map a [start, end) span of the normalised text back to the original text."""
        return self.index[start], self.index[end - 1] + 1


def normalize(text: str) -> Normalized:
    """Traditional→Simplified, full-width→half-width, lower case; whitespace and punctuation dropped."""
    simplified = _T2S.convert(text)
    if len(simplified) != len(text):  # OpenCC phrase rules may change length; fall back to per-character
        simplified = "".join(_T2S.convert(c) if len(_T2S.convert(c)) == 1 else c for c in text)
    chars: list[str] = []
    index: list[int] = []
    for i, char in enumerate(simplified):
        for c in unicodedata.normalize("NFKC", char).lower():
            if c.isspace() or unicodedata.category(c)[0] in "PSZC":
                continue
            chars.append(c)
            index.append(i)
    return Normalized(text="".join(chars), index=tuple(index))


_SYLLABLES: dict[str, str] = {}


def _syllable_char(syllable: str) -> str:
    return _SYLLABLES.setdefault(syllable, chr(_PUA_BASE + len(_SYLLABLES)))


def homophone_key(text: str) -> str:
    """Replace each Chinese character by one code per toneless syllable (老赖 and 老来 become equal).

    The result has the same length as `text`; other characters (and regex syntax) are kept.
    """
    syllables = lazy_pinyin(text, errors=list)
    if len(syllables) != len(text):
        syllables = [lazy_pinyin(c, errors=list)[0] for c in text]
    return "".join(_syllable_char(s) if s != c else c for c, s in zip(text, syllables, strict=True))


@dataclass(frozen=True, slots=True)
class Hit:
    """One match of a key's phrase or pattern, as a [start, end) span of the normalised text."""

    key: str
    start: int
    end: int


class PhraseIndex:
    """Finds many literal phrases (exactly and by homophone) and regular expressions (exactly) at once."""

    def __init__(self) -> None:
        self._exact = ahocorasick.Automaton()
        self._sound = ahocorasick.Automaton()
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        self._built = False

    def add_phrase(self, key: str, phrase: str, *, homophones: bool, force_homophones: bool = False) -> None:
        """Add a literal phrase (normalised here); with `homophones` long ones also match same-sounding text."""
        text = normalize(phrase).text
        if not text:
            raise ValueError("phrase is empty after normalisation")
        _add(self._exact, text, key)
        content = sum(c not in _FUNCTION_CHARS for c in text)
        if force_homophones or (homophones and content >= MIN_HOMOPHONE_SYLLABLES):
            _add(self._sound, homophone_key(text), key)

    def add_pattern(self, key: str, pattern: str) -> None:
        """Add a regular expression over normalised text (matched exactly); raises re.error if it does not compile."""
        self._patterns.append((key, re.compile(pattern)))

    def find(self, text: str) -> list[Hit]:
        """Every hit in already-normalised `text`."""
        if not self._built:
            for automaton in (self._exact, self._sound):
                if len(automaton):
                    automaton.make_automaton()
            self._built = True
        hits = _automaton_hits(self._exact, text)
        if len(self._sound):  # packs without sound-alike phrases (English) skip the pinyin pass
            hits += _automaton_hits(self._sound, homophone_key(text))
        for key, pattern in self._patterns:
            hits += [Hit(key, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
        return hits


def _add(automaton: ahocorasick.Automaton, text: str, key: str) -> None:
    length, keys = automaton.get(text, (len(text), ()))
    if key not in keys:
        automaton.add_word(text, (length, (*keys, key)))


def _automaton_hits(automaton: ahocorasick.Automaton, text: str) -> list[Hit]:
    if not len(automaton) or not text:
        return []
    return [Hit(key, end + 1 - length, end + 1)
            for end, (length, keys) in automaton.iter(text) for key in keys]
