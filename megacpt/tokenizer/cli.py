"""Expand a base tokenizer's vocabulary with tokens trained on target-language JSONL.

Example (Korean tokens into Mistral-7B's SentencePiece model, at most 16,000 new tokens):

    python tools/expand_vocab.py --base "$(python -c 'import mistral_common, os; \\
        print(os.path.dirname(mistral_common.__file__))')/data/tokenizer.model.v1" \\
        --corpus examples/corpora/ko/klue_dev.jsonl --language ko --max-new-tokens 16000 \\
        --heldout en=examples/corpora/en/wikitext2_valid.jsonl --output out/tokenizer-ko

Writes the directory described in ``megacpt.tokenizer.expand`` and prints the report table.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import COUNT, SHARE, ArgumentParser, add_json_key, add_overwrite, add_workers, ranged
from megacpt.tokenizer.config import (
    MORPH,
    NORMALIZATIONS,
    TRAINERS,
    ExpansionConfig,
    SelectConfig,
    TrainConfig,
)


def _by_language(items: list[str], flag: str, default: str | None = None) -> dict[str, list[Path]]:
    """``LANG=FILE`` items (or plain ``FILE`` ones, of language ``default``) grouped by language."""
    out: dict[str, list[Path]] = {}
    for item in items:
        lang, sep, path = item.partition("=")
        if not sep and default is not None:
            lang, path = default, item
        elif not sep or not lang or not path:
            raise UserError(f"{flag} takes LANG=FILE.jsonl, got {item!r}")
        out.setdefault(lang, []).append(Path(path))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--base", required=True, type=Path, help="tokenizer.model, tokenizer.json, tekken*.json or a dir"
    )
    p.add_argument(
        "--corpus",
        required=True,
        nargs="+",
        help="target-language JSONL: FILE, or LANG=FILE to report each language apart",
    )
    add_json_key(p, ExpansionConfig.json_key)
    p.add_argument("--output", required=True, type=Path, help="output tokenizer directory")
    p.add_argument(
        "--language", default=ExpansionConfig.language, help="language of --corpus files given without LANG="
    )
    p.add_argument(
        "--heldout-fraction",
        type=SHARE,
        default=ExpansionConfig.heldout_fraction,
        help="share of documents held out",
    )
    p.add_argument("--heldout", action="append", default=[], metavar="LANG=FILE", help="extra report text")
    p.add_argument(
        "--scripts",
        default=ExpansionConfig.scripts,
        help="scripts new tokens may be made of: names (hangul; hiragana,katakana,han), an alias "
        "(korean, japanese), auto (the corpus's non-Latin scripts) or all",
    )
    t, s = TrainConfig, SelectConfig
    p.add_argument("--trainer", choices=TRAINERS, default=t.trainer, help="auto: the base's family")
    p.add_argument(
        "--train-vocab-size", type=COUNT, default=t.vocab_size, help="size of the trained tokenizer"
    )
    p.add_argument("--character-coverage", type=ranged(float, 0, 1, above=True), default=t.character_coverage)
    p.add_argument("--normalization", choices=NORMALIZATIONS, default=t.normalization)
    p.add_argument("--morph", choices=MORPH, default=t.morph, help="morphological pre-segmentation")
    p.add_argument(
        "--min-frequency", type=COUNT, default=s.min_frequency, help="drop new tokens emitted fewer times"
    )
    p.add_argument(
        "--char-min-frequency",
        type=COUNT,
        default=s.char_min_frequency,
        help="add characters seen this often",
    )
    p.add_argument("--max-new-tokens", type=COUNT, default=s.max_new_tokens)
    p.add_argument(
        "--whole-characters",
        action="store_true",
        help="byte-level bases: no new token joins whole characters to the first bytes of the next one",
    )
    p.add_argument(
        "--vocab-size",
        type=COUNT,
        default=ExpansionConfig.target_vocab_size,
        help="largest final vocabulary size",
    )
    p.add_argument("--pad-to-multiple-of", type=COUNT, default=ExpansionConfig.pad_to_multiple_of)
    add_workers(p, t.threads, "trainer threads", old_name="--threads")
    add_overwrite(p)
    return p.parse_args(argv)


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = ExpansionConfig(
        base=args.base,
        corpus=_by_language(args.corpus, "--corpus", args.language),
        output_dir=args.output,
        language=args.language,
        heldout_fraction=args.heldout_fraction,
        heldout=_by_language(args.heldout, "--heldout"),
        scripts=args.scripts,
        train=TrainConfig(
            trainer=args.trainer,
            vocab_size=args.train_vocab_size,
            character_coverage=args.character_coverage,
            normalization=args.normalization,
            morph=args.morph,
            threads=args.workers,
        ),
        select=SelectConfig(
            min_frequency=args.min_frequency,
            char_min_frequency=args.char_min_frequency,
            max_new_tokens=args.max_new_tokens,
            whole_characters=args.whole_characters,
        ),
        target_vocab_size=args.vocab_size,
        pad_to_multiple_of=args.pad_to_multiple_of,
        overwrite=args.overwrite,
        json_key=args.json_key,
    )
    from megacpt.tokenizer.expand import expand_vocab  # transformers: once the config is good
    from megacpt.tokenizer.report import markdown_table

    result = expand_vocab(config)
    print(
        f"{result.base_kind}: {result.base_vocab_size} -> {result.new_vocab_size} tokens "
        f"(+{result.num_new_tokens}, padded {result.padded_vocab_size}) in {result.output_dir}"
    )
    print(markdown_table(result.stats), end="")
