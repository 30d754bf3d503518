"""The producers' side: shards read in batches of whole records and encoded.

A process encodes its shards in order and yields a stream of items: ``(index, Encoded)`` for each
batch of shard ``index``, then ``(index, None)`` at the shard's end. The sink (``sink``) writes
these streams in shard order, whichever process made them. The next batch, across shard ends, is
read on a thread while this one is encoded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from megacpt.data import columns, readers
from megacpt.data.config import PreprocessConfig
from megacpt.data.preprocess.plan import Task
from megacpt.tokenizer.encoders import TextTokenizer

FIRST_BATCH_BYTES = 1 << 20  # the run's first batch: encoding starts once it is read


@dataclass
class KeyTokens:
    """One key's documents of a batch: their ids (flat ids and lengths, or a list per document),
    their UTF-8 sizes and how many characters they hold."""

    ids: tuple[np.ndarray, np.ndarray] | list[list[int]]
    byte_lengths: np.ndarray
    characters: int


@dataclass
class Encoded:
    """A batch, encoded: one ``KeyTokens`` per JSON key, and the records skipped and why."""

    documents: int
    keys: list[KeyTokens]
    skipped: dict[str, int]


Item = tuple[int, Encoded | None]  # a batch of shard ``index``, or None: that shard's end


def read_ahead(cfg: PreprocessConfig, tasks: list[Task]) -> Iterator[Iterator[columns.Batch]]:
    """Each shard's batches, shard after shard; the next batch, across shard ends, is read on a
    thread while the caller encodes this one. The first batch is small (``FIRST_BATCH_BYTES``), so
    that encoding starts without waiting for a whole batch to be read."""

    def every_batch() -> Iterator[columns.Batch | None]:
        for i, (_, shard) in enumerate(tasks):
            first = min(FIRST_BATCH_BYTES, cfg.batch_bytes) if i == 0 else None
            yield from columns.batches(shard, cfg.json_keys, cfg.max_document_bytes, cfg.batch_bytes, first)
            yield None  # the shard's end

    stream = columns.prefetched(every_batch())
    for _ in tasks:
        yield iter(stream.__next__, None)


def encode(batch: columns.Batch, tok: TextTokenizer, flat: bool) -> Encoded:
    """``batch`` encoded; with ``flat``, ids as flat arrays even from a tokenizer that returns lists
    (cheaper to send to another process)."""
    keys = []
    for column in batch.columns:
        ids: tuple[np.ndarray, np.ndarray] | list[list[int]]
        if tok.encode_flat is not None:
            ids = tok.encode_flat(column)
        else:
            ids = tok.encode_batch(column.texts())
            if flat:
                lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
                ids = (
                    np.fromiter((t for doc in ids for t in doc), dtype=np.int64, count=int(lengths.sum())),
                    lengths,
                )
        keys.append(KeyTokens(ids, column.byte_lengths(), column.characters))
    return Encoded(len(batch), keys, dict(batch.skipped))


def encoded_stream(
    cfg: PreprocessConfig, tasks: list[Task], tok: TextTokenizer, flat: bool = False
) -> Iterator[Item]:
    """The items of ``tasks``, encoded here in order."""
    for (index, _), batches in zip(tasks, read_ahead(cfg, tasks)):
        for batch in batches:
            yield index, encode(batch, tok, flat)
        yield index, None


def sample(
    paths: list[str], keys: Sequence[str], max_bytes: int, count: int = 64, characters: int = 100_000
) -> list[str]:
    """The first ``count`` documents of the first input, cut to ``characters`` in all: what gigatoken
    is checked on at start-up (the reference tokenizer is slow, and this is a fixed cost)."""
    first = readers.plan_shards(paths[:1], 1 << 20)[0]
    texts: list[str] = []
    for record, _reason in readers.read_shard(first, keys, max_bytes):
        for text in record or []:
            texts.append(text[:characters])
            characters -= len(texts[-1])
        if len(texts) >= count or characters <= 0:
            break
    return texts
