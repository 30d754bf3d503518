"""The interface both tokenizer families implement, and the loader that picks one from a path.

A family knows how to spell a candidate token in its own vocabulary, which candidates normal
tokenisation can reach once appended, how to encode text with the merged vocabulary (for counting
and reporting) and how to write the merged tokenizer. Everything above it (selection, report,
the ``expand_vocab`` entry point) is family-agnostic.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from megacpt.errors import UserError

Encoded = list[list[int]]
Parts = tuple[str, str] | None


class BaseVocab(ABC):
    """A base tokenizer that new tokens can be appended to (old ids never change)."""

    kind: str
    base_size: int

    @abstractmethod
    def key(self, token: bytes) -> str | None:
        """The vocabulary string of a candidate given as UTF-8 bytes, ``None`` if not expressible."""

    @abstractmethod
    def in_base(self, key: str) -> bool:
        """Whether ``key`` is already a base token."""

    @abstractmethod
    def reachable(self, keys: Sequence[str]) -> dict[str, Parts]:
        """The ``keys`` (in order) that tokenisation reaches when appended in that order, each with
        the two tokens it is merged from (``None`` for a single character)."""

    @abstractmethod
    def encode(self, texts: Sequence[str], keys: Sequence[str] | None) -> Encoded:
        """Token ids of ``texts`` under the base (``keys`` None) or with reachable ``keys`` appended."""

    @abstractmethod
    def byte_ids(self, keys: Sequence[str]) -> set[int]:
        """Ids that stand for bytes rather than whole characters (byte fallback, partial UTF-8)."""

    @abstractmethod
    def surface(self, key: str) -> str:
        """Human-readable text of a token, for ``new_tokens.tsv``."""

    @abstractmethod
    def write(self, keys: Sequence[str], padded_size: int, out_dir: Path) -> None:
        """Write the merged tokenizer (HF files, plus ``tokenizer.model`` where it applies)."""


def load_base(path: Path) -> BaseVocab:
    """Load a SentencePiece ``.model``, a byte-level BPE ``tokenizer.json``, a mistral-common
    ``tekken*.json``, or a directory holding ``tokenizer.model`` or ``tokenizer.json``."""
    from megacpt.tokenizer.merge_bpe import ByteLevelVocab
    from megacpt.tokenizer.merge_sentencepiece import SentencePieceVocab

    if path.is_dir():
        for name in ("tokenizer.model", "tokenizer.json", "tekken.json"):
            if (path / name).is_file():
                return load_base(path / name)
        raise UserError(f"{path}: no tokenizer.model, tokenizer.json or tekken.json in this directory")
    with path.open("rb") as handle:
        head = handle.read(64).lstrip()
    if not head.startswith(b"{"):
        return SentencePieceVocab.load(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON tokenizer ({err})") from err
    if "vocab" in data and "config" in data and "pattern" in data.get("config", {}):
        return ByteLevelVocab.from_tekken(path)
    return ByteLevelVocab.from_tokenizer_json(path, data)
