"""Quality filters that know Korean and Japanese: target-script share, length, repetition, symbols.

Each filter looks at one normalised document and returns ``None`` (keep) or a short reason. The
measures follow the Gopher/RefinedWeb heuristics, adapted to scripts without spaces: repetition is
measured on characters (duplicate lines, duplicate character n-grams), not on words, so the same
thresholds work for Korean, Japanese and English.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import megacpt.clean._kernels as _kernels
from megacpt.errors import UserError

if TYPE_CHECKING:
    import numpy as np

# Character classes of one character each. ``count`` looks every character of a document up in a
# table of these classes for the whole Basic Multilingual Plane, built once with the patterns
# themselves: one pass in C++ per document instead of one regular-expression scan per class.
HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
KANJI = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]")
LATIN = re.compile("[A-Za-z\u00c0-\u024f]")
LETTER = re.compile(r"[^\W\d_]")
SYMBOL = re.compile(r"[^\w\s]")  # punctuation, symbols, marks: neither alphanumeric nor space
DIGIT = re.compile(r"\d")
SPACE = re.compile(r"\s")

# Which letters count as "the target script" of a language tag.
SCRIPTS: dict[str, list[re.Pattern[str]]] = {"ko": [HANGUL], "ja": [KANA, KANJI], "en": [LATIN]}


CLASSES = (HANGUL, KANA, KANJI, LATIN, LETTER, SYMBOL, DIGIT, SPACE)
_PLANE = 0x10000


@functools.cache
def _class_table() -> np.ndarray:
    """Each BMP code point's classes, as bits of one byte."""
    import numpy as np

    plane = "".join(map(chr, range(_PLANE)))
    table = np.zeros(_PLANE, np.uint8)
    for bit, pattern in enumerate(CLASSES):
        table[[m.start() for m in pattern.finditer(plane)]] |= 1 << bit
    return table


_BEYOND_PLANE = re.compile("[\U00010000-\U0010ffff]")


@functools.lru_cache(maxsize=4)  # the filters and language id ask about the same text in turn
def class_counts(text: str) -> tuple[int, ...]:
    """How many characters of ``text`` fall in each of ``CLASSES``."""
    counts, beyond = _kernels.class_counts(text, _class_table())
    if not beyond:
        return counts
    rest = "".join(_BEYOND_PLANE.findall(text))  # rare: emoji, CJK extensions
    return tuple(c + len(p.findall(rest)) for c, p in zip(counts, CLASSES, strict=True))


def count(pattern: re.Pattern[str], text: str) -> int:
    """How many characters of ``text`` match ``pattern``, one of ``CLASSES``."""
    return class_counts(text)[CLASSES.index(pattern)]


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds; a document outside any of them is removed with that filter's reason. The
    script-share filter applies to documents whose language tag is in ``SCRIPTS``."""

    min_script_share: float = 0.5  # of letters, e.g. Hangul for "ko", kana+kanji for "ja"
    min_kana_share: float = 0.05  # of letters for "ja": Chinese text has kanji but no kana
    min_chars: int = 20
    max_chars: int = 1_000_000
    max_symbol_ratio: float = 0.3  # punctuation and symbols (not alphanumeric) / non-space characters
    max_digit_ratio: float = 0.3  # digits / non-space characters
    max_dup_line_fraction: float = 0.3  # characters in lines that repeat an earlier line
    ngram_chars: int = 20
    max_dup_ngram_fraction: float = 0.5  # characters covered by character n-grams seen twice or more
    disabled: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        shares = ("min_script_share", "min_kana_share", "max_symbol_ratio", "max_digit_ratio")
        for name in (*shares, "max_dup_line_fraction", "max_dup_ngram_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not 0 <= self.min_chars <= self.max_chars:
            raise UserError(f"need 0 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}")
        if self.ngram_chars < 1:
            raise UserError(f"ngram_chars must be at least 1, got {self.ngram_chars}")
        unknown = sorted(self.disabled - set(FILTERS))
        if unknown:
            raise UserError(f"unknown filter(s) {unknown}; known: {sorted(FILTERS)}")


def length(text: str, cfg: QualityConfig, lang: str | None) -> str | None:
    n = len(text)
    if n < cfg.min_chars:
        return f"{n} chars < {cfg.min_chars}"
    if n > cfg.max_chars:
        return f"{n} chars > {cfg.max_chars}"
    return None


def script_share(text: str, cfg: QualityConfig, lang: str | None) -> str | None:
    scripts = SCRIPTS.get(lang or "")
    if scripts is None:
        return None
    letters = count(LETTER, text)
    if not letters:
        return "no letters"
    share = sum(count(p, text) for p in scripts) / letters
    if share < cfg.min_script_share:
        return f"{lang} script share {share:.2f} < {cfg.min_script_share}"
    if lang == "ja":
        kana_share = count(KANA, text) / letters
        if kana_share < cfg.min_kana_share:
            return f"kana share {kana_share:.3f} < {cfg.min_kana_share} (Chinese?)"
    return None


def symbols_and_digits(text: str, cfg: QualityConfig, lang: str | None) -> str | None:
    chars = len(text) - count(SPACE, text)
    if not chars:
        return "only whitespace"
    symbols = count(SYMBOL, text) / chars
    if symbols > cfg.max_symbol_ratio:
        return f"symbol ratio {symbols:.2f} > {cfg.max_symbol_ratio}"
    digits = count(DIGIT, text) / chars
    if digits > cfg.max_digit_ratio:
        return f"digit ratio {digits:.2f} > {cfg.max_digit_ratio}"
    return None


def repeated_lines(text: str, cfg: QualityConfig, lang: str | None) -> str | None:
    seen: set[str] = set()
    dup = total = 0
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        total += len(line)
        if line in seen:
            dup += len(line)
        seen.add(line)
    if total and dup / total > cfg.max_dup_line_fraction:
        return f"repeated lines cover {dup / total:.2f} > {cfg.max_dup_line_fraction} of the text"
    return None


def repeated_ngrams(text: str, cfg: QualityConfig, lang: str | None) -> str | None:
    flat = " ".join(text.split())
    n = cfg.ngram_chars
    if len(flat) < 2 * n:
        return None
    fraction = _kernels.repeated_ngram_cover(flat, n) / len(flat)
    if fraction > cfg.max_dup_ngram_fraction:
        return f"repeated {n}-char n-grams cover {fraction:.2f} > {cfg.max_dup_ngram_fraction}"
    return None


FILTERS: dict[str, Callable[[str, QualityConfig, str | None], str | None]] = {
    "length": length,
    "script_share": script_share,
    "symbols_digits": symbols_and_digits,
    "repeated_lines": repeated_lines,
    "repeated_ngrams": repeated_ngrams,
}


def first_failure(text: str, cfg: QualityConfig, lang: str | None = None) -> tuple[str, str] | None:
    """The first filter (in ``FILTERS`` order) that rejects ``text`` in language ``lang``, with its reason."""
    for name, check in FILTERS.items():
        if name in cfg.disabled:
            continue
        reason = check(text, cfg, lang)
        if reason is not None:
            return name, reason
    return None
