"""Per-document rolling windows: every token of a document predicted once, from that document only.

A document's ids (its end-of-document token dropped) are preceded by one prefix token (the
end-of-document id) and cut into windows of at most ``seq_length`` predictions; each window's input
is the ``seq_length`` tokens before its targets, so the first token of a window sees the end of
the previous one, and no token ever sees another document. This is lm-evaluation-harness'
``loglikelihood_rolling`` with ``max_length = seq_length`` and ``prefix_token_id`` the prefix, so
the trainer's ``val_bpb`` and an ``lm_eval`` run on the export measure the same thing.
Bits per byte is the summed negative log-likelihood (nats) / ln 2 / the documents' UTF-8 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Input ids and the ids they predict (same length, the targets shifted by one)."""

    inputs: list[int]
    targets: list[int]


def document_windows(ids: Sequence[int], prefix: int, seq_length: int) -> Iterator[Window]:
    """The windows of one document (``ids`` without its end-of-document token)."""
    if seq_length < 1:
        raise ValueError("seq_length must be positive")
    seq = [prefix, *ids]
    for start in range(0, len(ids), seq_length):
        targets = seq[start + 1 : start + 1 + seq_length]
        yield Window(inputs=seq[start : start + len(targets)], targets=targets)


@dataclass
class Score:
    """Summed negative log-likelihood over some documents, and what it was summed over."""

    nll: float = 0.0  # nats
    tokens: int = 0
    bytes: int = 0
    documents: int = 0

    def add(self, other: Score) -> None:
        self.nll += other.nll
        self.tokens += other.tokens
        self.bytes += other.bytes
        self.documents += other.documents

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes if self.bytes else math.nan

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood per token (nats)."""
        return self.nll / self.tokens if self.tokens else math.nan
