"""Typed configuration for vocabulary expansion, validated on construction.

One dataclass per step (train, select, merge) nested in ``ExpansionConfig``, so the quickstart
pipeline and ``tools/expand_vocab.py`` build the same object and every bad value is rejected
with a ``UserError`` before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from megacpt.errors import UserError
from megacpt.tokenizer.scripts import parse_scripts

TRAINERS = ("auto", "sentencepiece_bpe", "sentencepiece_unigram", "hf_bpe")
NORMALIZATIONS = ("identity", "nfkc")
MORPH = ("none", "mecab", "kiwi")


@dataclass
class TrainConfig:
    """How the target-language candidate tokenizer is trained.

    ``trainer`` ``auto`` picks the base's own family: ``hf_bpe`` (byte-level, with the base's
    pre-tokenizer) for a byte-level base, ``sentencepiece_bpe`` for a SentencePiece one.
    ``vocab_size`` is the size of the candidate tokenizer (EEVE trained 40k), not of the result;
    ``normalization`` is applied to the training text only (Swallow trained on NFKC text), the
    merged tokenizer keeps the base tokenizer's own normaliser. ``character_coverage`` applies to the
    SentencePiece trainers (the HF trainer keeps every character). SentencePiece trains on word counts;
    ``max_words`` caps (by sampling) how many distinct words it reads.
    """

    trainer: str = "auto"
    vocab_size: int = 16000
    character_coverage: float = 0.9995
    normalization: str = "identity"
    morph: str = "none"
    max_words: int = 5_000_000
    max_piece_length: int = 16
    threads: int = 2

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise UserError(f"train.trainer must be one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        if self.normalization not in NORMALIZATIONS:
            raise UserError(f"train.normalization must be one of {', '.join(NORMALIZATIONS)}")
        if self.morph not in MORPH:
            raise UserError(f"train.morph must be one of {', '.join(MORPH)}, got {self.morph!r}")
        if self.vocab_size < 100:
            raise UserError(f"train.vocab_size must be at least 100, got {self.vocab_size}")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise UserError("train.character_coverage must lie in [0.9, 1.0]")
        if self.max_words < 1 or self.max_piece_length < 1 or self.threads < 1:
            raise UserError("train.max_words, max_piece_length and threads must be positive")


@dataclass
class SelectConfig:
    """EEVE's selection: frequency threshold, frequent single characters, optional cap."""

    min_frequency: int = 2
    char_min_frequency: int = 2
    max_new_tokens: int | None = None
    max_rounds: int = 10
    whole_characters: bool = False  # byte-level: no token joins characters to part of the next one

    def __post_init__(self) -> None:
        if self.min_frequency < 1 or self.char_min_frequency < 1:
            raise UserError("select.min_frequency and select.char_min_frequency must be at least 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UserError(f"select.max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.max_rounds < 1:
            raise UserError("select.max_rounds must be at least 1")


@dataclass
class ExpansionConfig:
    """Everything ``expand_vocab`` needs.

    ``base`` is a SentencePiece ``.model``, a byte-level BPE ``tokenizer.json`` (or a directory
    holding one of them), or a mistral-common ``tekken*.json``. ``corpus`` holds JSONL files with
    a ``text`` field, as a list (one language, named ``language``) or a mapping from language name
    to files (the report then shows each language's held-out text apart); a deterministic ``heldout_fraction`` of their documents (by text hash) is
    kept out of training and used only by the report. ``heldout`` maps a language name to extra
    JSONL files reported on whole (English replay text, for instance).
    ``scripts`` names the writing systems new tokens may be made of (``auto``: the non-Latin
    scripts of the corpus; ``all``: no restriction; see ``megacpt.tokenizer.scripts``), so text
    in other scripts keeps the base's ids. ``target_vocab_size`` (optional) caps the final vocabulary size (new tokens included): it must
    exceed the base's size. ``pad_to_multiple_of`` pads the final size with unused tokens.
    An existing non-empty ``output_dir`` is replaced only with ``overwrite``.
    """

    base: Path
    corpus: list[Path] | dict[str, list[Path]]
    output_dir: Path
    language: str = "target"
    heldout_fraction: float = 0.1
    heldout: dict[str, list[Path]] = field(default_factory=dict)
    scripts: str | list[str] = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    target_vocab_size: int | None = None
    pad_to_multiple_of: int = 1
    overwrite: bool = False
    json_key: str = "text"  # the JSONL field holding the text, in the corpus and held-out files

    def __post_init__(self) -> None:
        self.base = Path(self.base)
        corpus = self.corpus if isinstance(self.corpus, dict) else {self.language: self.corpus}
        self.corpus = {lang: [Path(p) for p in paths] for lang, paths in corpus.items()}
        self.output_dir = Path(self.output_dir)
        self.heldout = {lang: [Path(p) for p in paths] for lang, paths in self.heldout.items()}
        if not any(self.corpus.values()):
            raise UserError("no corpus given: pass at least one JSONL file")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise UserError(f"heldout_fraction must lie in [0, 1), got {self.heldout_fraction}")
        parse_scripts(self.scripts)
        if self.pad_to_multiple_of < 1:
            raise UserError(f"pad_to_multiple_of must be positive, got {self.pad_to_multiple_of}")
        for path in [self.base, *self.corpus_files, *(p for ps in self.heldout.values() for p in ps)]:
            if not path.exists():
                raise UserError(f"{path}: no such file or directory")
        for path in [*self.corpus_files, *(p for ps in self.heldout.values() for p in ps)]:
            if path.is_dir():
                raise UserError(f"{path} is a directory: give the JSONL files in it (plain, .gz or .zst)")

    @property
    def corpora(self) -> dict[str, list[Path]]:
        """The training corpus by language."""
        assert isinstance(self.corpus, dict)
        return self.corpus

    @property
    def corpus_files(self) -> list[Path]:
        return [p for paths in self.corpora.values() for p in paths]
