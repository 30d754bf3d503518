"""The interface both tokenizer families implement, and the loader that picks one from a path.

A family knows how to spell a candidate token in its own vocabulary, which candidates normal
tokenisation can reach once appended, how to encode text with the merged vocabulary (for counting
and reporting) and how to write the merged tokenizer. Everything above it (selection, report,
the ``expand_vocab`` entry point) is family-agnostic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Encoded = list[list[int]]
Parts = tuple[str, str] | None


class BaseVocab(ABC):
    """A base tokenizer that new tokens can be appended to (old ids never change)."""

    kind: str
    base_size: int
    default_trainer: str  # the candidate trainer of this family (``TrainConfig.trainer`` ``auto``)

    @property
    def pre_tokenizer(self) -> dict[str, Any] | None:
        """The base's pre-tokenizer (``tokenizer.json`` form) that candidate training must split text
        with, or ``None`` when the family splits words itself (SentencePiece)."""
        return None

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
