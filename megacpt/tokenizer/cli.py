"""Expand a base tokenizer's vocabulary with tokens trained on target-language JSONL.

Example (Korean tokens into Mistral-7B's SentencePiece model, at most 16,000 new tokens):

    python tools/expand_vocab.py --base "$(python -c 'import mistral_common, os; \\
        print(os.path.dirname(mistral_common.__file__))')/data/tokenizer.model.v1" \\
        --corpus examples/corpora/ko/klue_dev.jsonl --language ko --max-new-tokens 16000 \\
        --heldout en=examples/corpora/en/wikitext2_valid.jsonl --output out/tokenizer-ko

Writes the directory described in ``megacpt.tokenizer.expand`` and prints the report table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from megacpt.errors import exits_on_user_error
from megacpt.options import (
    COUNT,
    SHARE,
    flag,
    json_key_flag,
    language_items,
    overwrite_flag,
    parse,
    ranged,
    workers_flag,
)
from megacpt.tokenizer.config import (
    MORPH,
    NORMALIZATIONS,
    TRAINERS,
    ExpansionConfig,
    SelectConfig,
    TrainConfig,
)


def _by_language(items: Iterable[str], option: str, default: str | None = None) -> dict[str, list[Path]]:
    """``LANG=FILE`` items (or plain ``FILE`` ones, of language ``default``) grouped by language."""
    out: dict[str, list[Path]] = {}
    for lang, path in language_items(items, option, default, what="FILE.jsonl"):
        out.setdefault(lang, []).append(Path(path))
    return out


T, S = TrainConfig, SelectConfig


@dataclass(frozen=True, kw_only=True)
class ExpandOptions:
    """``megacpt expand``'s options."""

    base: Path
    """tokenizer.model, tokenizer.json, tekken*.json or a dir"""
    corpus: tuple[str, ...]
    """target-language JSONL: FILE, or LANG=FILE to report each language apart"""
    json_key: str = json_key_flag(ExpansionConfig.json_key)
    output: Path
    """output tokenizer directory"""
    language: str = ExpansionConfig.language
    """language of --corpus files given without LANG="""
    heldout_fraction: float = flag(ExpansionConfig.heldout_fraction, type=SHARE)
    """share of documents held out"""
    heldout: tuple[str, ...] = flag((), repeat=True, metavar="LANG=FILE")
    """extra report text (repeatable)"""
    scripts: str = "auto"
    """scripts new tokens may be made of: names (hangul; hiragana,katakana,han), an alias (korean,
    japanese), auto (the corpus's non-Latin scripts) or all"""
    trainer: str = flag(T.trainer, choices=TRAINERS)
    """auto: the base's family"""
    train_vocab_size: int = flag(T.vocab_size, type=COUNT)
    """size of the trained tokenizer"""
    character_coverage: float = flag(T.character_coverage, type=ranged(float, 0, 1, above=True))
    """SentencePiece's share of characters the trained tokenizer covers"""
    normalization: str = flag(T.normalization, choices=NORMALIZATIONS)
    """normalisation of the training text (the merged tokenizer keeps the base's normaliser)"""
    morph: str = flag(T.morph, choices=MORPH)
    """morphological pre-segmentation"""
    min_frequency: int = flag(S.min_frequency, type=COUNT)
    """drop new tokens emitted fewer times"""
    char_min_frequency: int = flag(S.char_min_frequency, type=COUNT)
    """add characters seen this often"""
    max_new_tokens: int = flag(S.max_new_tokens, type=COUNT)
    """at most this many new tokens"""
    whole_characters: bool = False
    """byte-level bases: no new token joins whole characters to the first bytes of the next one"""
    vocab_size: int = flag(ExpansionConfig.target_vocab_size, type=COUNT)
    """largest final vocabulary size"""
    pad_to_multiple_of: int = flag(ExpansionConfig.pad_to_multiple_of, type=COUNT)
    """pad the vocabulary to a multiple of this"""
    workers: int = workers_flag(T.threads, "trainer threads", old_name="--threads")
    overwrite: bool = overwrite_flag()

    def config(self) -> ExpansionConfig:
        return ExpansionConfig(
            base=self.base,
            corpus=_by_language(self.corpus, "--corpus", self.language),
            output_dir=self.output,
            language=self.language,
            heldout_fraction=self.heldout_fraction,
            heldout=_by_language(self.heldout, "--heldout"),
            scripts=self.scripts,
            train=TrainConfig(
                trainer=self.trainer,
                vocab_size=self.train_vocab_size,
                character_coverage=self.character_coverage,
                normalization=self.normalization,
                morph=self.morph,
                threads=self.workers,
            ),
            select=SelectConfig(
                min_frequency=self.min_frequency,
                char_min_frequency=self.char_min_frequency,
                max_new_tokens=self.max_new_tokens,
                whole_characters=self.whole_characters,
            ),
            target_vocab_size=self.vocab_size,
            pad_to_multiple_of=self.pad_to_multiple_of,
            overwrite=self.overwrite,
            json_key=self.json_key,
        )


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    config = parse(ExpandOptions, argv, __doc__.split("\n")[0]).config()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from megacpt.tokenizer.expand import expand_vocab  # transformers: once the config is good
    from megacpt.tokenizer.report import markdown_table

    result = expand_vocab(config)
    print(
        f"{result.base_kind}: {result.base_vocab_size} -> {result.new_vocab_size} tokens "
        f"(+{result.num_new_tokens}, padded {result.padded_vocab_size}) in {result.output_dir}"
    )
    print(markdown_table(result.stats), end="")
