"""Clean a JSONL corpus: normalise Unicode, drop boilerplate lines, filter by language and quality,
remove exact and near duplicates; write the kept documents and a JSON report of every removal.

    python tools/clean_corpus.py raw/ko.jsonl clean/ko.jsonl --lang ko --workers 8

An existing output is an error unless ``--overwrite``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from megacpt.clean.config import CleanConfig
from megacpt.clean.filters import FILTERS, QualityConfig
from megacpt.clean.normalize import FORMS
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import (
    COUNT,
    NON_NEGATIVE,
    SHARE,
    flag,
    json_key_flag,
    overwrite_flag,
    parse,
    workers_flag,
)

Q = QualityConfig


@dataclass(frozen=True, kw_only=True)
class CleanOptions:
    """``megacpt clean``'s options."""

    input: str = flag(positional=True)
    """JSONL file, one document per line"""
    output: str = flag(positional=True)
    """cleaned JSONL file (written atomically)"""
    report: str | None = None
    """JSON report path (default: OUTPUT.report.json)"""
    json_key: str = json_key_flag(CleanConfig.text_key, old_name="--text-key")
    lang: tuple[str, ...] = flag((), repeat=True)
    """keep only this language (repeatable), e.g. ko"""
    min_lang_prob: float | None = flag(None, type=SHARE, default_text=str(CleanConfig.min_lang_prob))
    """with --lang: minimum language-id probability"""
    normalization: str = flag(CleanConfig.normalization, choices=FORMS)
    """Unicode normalisation form"""
    min_chars: int = flag(Q.min_chars, type=NON_NEGATIVE)
    """drop documents shorter than this many characters"""
    max_chars: int = flag(Q.max_chars, type=COUNT)
    """drop documents longer than this many characters"""
    min_script_share: float = flag(Q.min_script_share, type=SHARE)
    """share of letters in the language's script"""
    max_symbol_ratio: float = flag(Q.max_symbol_ratio, type=SHARE)
    """largest share of punctuation and symbols among non-space characters"""
    max_digit_ratio: float = flag(Q.max_digit_ratio, type=SHARE)
    """largest share of digits among non-space characters"""
    max_dup_line_fraction: float = flag(Q.max_dup_line_fraction, type=SHARE)
    """largest share of characters in lines that repeat an earlier line"""
    max_dup_ngram_fraction: float = flag(Q.max_dup_ngram_fraction, type=SHARE)
    """largest share of characters covered by character n-grams seen twice or more"""
    disable: tuple[str, ...] = flag((), repeat=True, choices=tuple(sorted(FILTERS)))
    """turn a quality filter off (repeatable)"""
    exact_dedup: bool = flag(True, "--no-exact-dedup")
    """keep exact duplicates (no content-hash deduplication)"""
    near_dedup: bool = flag(True, "--no-near-dedup")
    """keep near duplicates (no MinHash deduplication)"""
    near_dup_threshold: float = flag(CleanConfig.near_dup_threshold, type=SHARE)
    """MinHash Jaccard above which a document is a near duplicate"""
    workers: int = workers_flag(os.cpu_count() or 1, "worker processes")
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        if self.min_lang_prob is not None and not self.lang:
            raise UserError("--min-lang-prob applies only with --lang (the languages to keep)")

    def config(self) -> CleanConfig:
        quality = QualityConfig(
            min_script_share=self.min_script_share,
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            max_symbol_ratio=self.max_symbol_ratio,
            max_digit_ratio=self.max_digit_ratio,
            max_dup_line_fraction=self.max_dup_line_fraction,
            max_dup_ngram_fraction=self.max_dup_ngram_fraction,
            disabled=frozenset(self.disable),
        )
        return CleanConfig(
            text_key=self.json_key,
            normalization=self.normalization,
            languages=self.lang,
            min_lang_prob=CleanConfig.min_lang_prob if self.min_lang_prob is None else self.min_lang_prob,
            quality=quality,
            exact_dedup=self.exact_dedup,
            near_dedup=self.near_dedup,
            near_dup_threshold=self.near_dup_threshold,
        )


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    options = parse(CleanOptions, argv, __doc__)
    config = options.config()
    from megacpt.clean.pipeline import clean_corpus  # numpy and datasketch: once the options are good

    report = clean_corpus(
        options.input,
        options.output,
        options.report,
        config,
        workers=options.workers,
        overwrite=options.overwrite,
    )
    print(report.summary())
