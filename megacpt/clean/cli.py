"""Clean a JSONL corpus: normalise Unicode, drop boilerplate lines, filter by language and quality,
remove exact and near duplicates; write the kept documents and a JSON report of every removal.

    python tools/clean_corpus.py raw/ko.jsonl clean/ko.jsonl --lang ko --workers 8

An existing output is an error unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os

from megacpt.clean.config import CleanConfig
from megacpt.clean.filters import FILTERS, QualityConfig
from megacpt.clean.normalize import FORMS
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import (
    COUNT,
    NON_NEGATIVE,
    SHARE,
    ArgumentParser,
    add_json_key,
    add_overwrite,
    add_workers,
)


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="JSONL file, one document per line")
    p.add_argument("output", help="cleaned JSONL file (written atomically)")
    p.add_argument("--report", help="JSON report path (default: OUTPUT.report.json)")
    add_json_key(p, CleanConfig.text_key, old_name="--text-key")
    p.add_argument(
        "--lang", action="append", default=[], help="keep only this language (repeatable), e.g. ko"
    )
    p.add_argument(
        "--min-lang-prob",
        type=SHARE,
        default=None,
        help=f"with --lang: minimum language-id probability (default: {CleanConfig.min_lang_prob})",
    )
    p.add_argument(
        "--normalization", choices=FORMS, default=CleanConfig.normalization, help="Unicode normalisation form"
    )
    q = QualityConfig
    p.add_argument("--min-chars", type=NON_NEGATIVE, default=q.min_chars)
    p.add_argument("--max-chars", type=COUNT, default=q.max_chars)
    p.add_argument(
        "--min-script-share",
        type=SHARE,
        default=q.min_script_share,
        help="share of letters in the language's script",
    )
    p.add_argument("--max-symbol-ratio", type=SHARE, default=q.max_symbol_ratio)
    p.add_argument("--max-digit-ratio", type=SHARE, default=q.max_digit_ratio)
    p.add_argument("--max-dup-line-fraction", type=SHARE, default=q.max_dup_line_fraction)
    p.add_argument("--max-dup-ngram-fraction", type=SHARE, default=q.max_dup_ngram_fraction)
    p.add_argument(
        "--disable", action="append", default=[], choices=sorted(FILTERS), help="turn a quality filter off"
    )
    p.add_argument("--no-exact-dedup", action="store_true")
    p.add_argument("--no-near-dedup", action="store_true")
    p.add_argument(
        "--near-dup-threshold",
        type=SHARE,
        default=CleanConfig.near_dup_threshold,
        help="MinHash Jaccard above which a document is a near duplicate",
    )
    add_workers(p, os.cpu_count() or 1, "worker processes")
    add_overwrite(p)
    a = p.parse_args(argv)
    quality = QualityConfig(
        min_script_share=a.min_script_share,
        min_chars=a.min_chars,
        max_chars=a.max_chars,
        max_symbol_ratio=a.max_symbol_ratio,
        max_digit_ratio=a.max_digit_ratio,
        max_dup_line_fraction=a.max_dup_line_fraction,
        max_dup_ngram_fraction=a.max_dup_ngram_fraction,
        disabled=frozenset(a.disable),
    )
    if a.min_lang_prob is not None and not a.lang:
        raise UserError("--min-lang-prob applies only with --lang (the languages to keep)")
    config = CleanConfig(
        text_key=a.json_key,
        normalization=a.normalization,
        languages=tuple(a.lang),
        min_lang_prob=CleanConfig.min_lang_prob if a.min_lang_prob is None else a.min_lang_prob,
        quality=quality,
        exact_dedup=not a.no_exact_dedup,
        near_dedup=not a.no_near_dedup,
        near_dup_threshold=a.near_dup_threshold,
    )
    from megacpt.clean.pipeline import clean_corpus  # numpy and datasketch: once the options are good

    report = clean_corpus(a.input, a.output, a.report, config, workers=a.workers, overwrite=a.overwrite)
    print(report.summary())
