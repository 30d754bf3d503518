"""Documents as columns of UTF-8 text: what preprocessing encodes and measures, one column per JSON key.

A column is Arrow's large-string layout in NumPy: one byte buffer and int64 offsets into it, so
gigatoken encodes it without a Python string per document (NumPy rather than pyarrow: nothing
else here needs pyarrow, whose import costs a tenth of a second). A block of whole JSONL lines is
scanned in C++ (``_jsonl_scan``, csrc/jsonl_scan_core.h) in one pass: strict JSON, UTF-8, the
requested fields decoded, and the reference reader's record checks (``readers``: blank, missing
key, not a string, empty). Each line whose reading by Python's ``json`` the scanner cannot be sure
of (malformed, a BOM, a lone surrogate, a duplicate key...) is read by the reference reader and put
in its place, so both give the same documents and the same skip counts.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TypeVar

import numpy as np

from megacpt.data import _jsonl_scan, readers

T = TypeVar("T")


@dataclass(frozen=True)
class TextColumn:
    """Documents as one UTF-8 buffer (``data``, uint8) and int64 ``offsets`` into it (one more than
    documents, from 0), with how many characters they hold."""

    offsets: np.ndarray
    data: np.ndarray
    characters: int

    @classmethod
    def of(cls, texts: list[str]) -> TextColumn:
        encoded = [text.encode("utf-8") for text in texts]
        data = np.frombuffer(b"".join(encoded), np.uint8)
        return cls(_offsets([len(e) for e in encoded]), data, sum(map(len, texts)))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def byte_lengths(self) -> np.ndarray:
        """Each document's size in UTF-8 bytes (int64)."""
        return np.diff(self.offsets)

    def texts(self) -> list[str]:
        data = self.data.tobytes()
        bounds = self.offsets.tolist()
        return [data[a:b].decode("utf-8") for a, b in pairwise(bounds)]

    def spliced(self, inserted: list[tuple[int, str]]) -> TextColumn:
        """This column with each ``(position, text)`` put before its document at ``position`` (in order)."""
        encoded = [text.encode("utf-8") for _, text in inserted]
        positions = [position for position, _ in inserted]
        pieces: list[np.ndarray] = []
        previous = 0
        for position, text in zip(positions, encoded):
            pieces += [
                self.data[self.offsets[previous] : self.offsets[position]],
                np.frombuffer(text, np.uint8),
            ]
            previous = position
        pieces.append(self.data[self.offsets[previous] :])
        lengths = np.insert(self.byte_lengths(), positions, [len(text) for text in encoded])
        added = sum(len(text) for _, text in inserted)
        return TextColumn(_offsets(lengths), np.concatenate(pieces), self.characters + added)


def _offsets(lengths: list[int] | np.ndarray) -> np.ndarray:
    """int64 offsets (from 0) of consecutive pieces of these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


@dataclass
class Batch:
    """The kept documents of some records, one column per key, and why the others were skipped."""

    columns: list[TextColumn]
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.columns[0])


def from_records(records: Iterable[readers.Record], keys: Sequence[str]) -> Batch:
    """The reference reader's records (texts or a skip reason) as a batch."""
    kept: list[list[str]] = [[] for _ in keys]
    skipped: Counter[str] = Counter()
    for texts, reason in records:
        if texts is None:
            skipped[str(reason)] += 1
            continue
        for column, text in zip(kept, texts):
            column.append(text)
    return Batch([TextColumn.of(column) for column in kept], skipped)


def batches(
    shard: readers.Shard,
    keys: Sequence[str],
    max_bytes: int,
    batch_bytes: int,
    first_batch_bytes: int | None = None,
) -> Iterator[Batch]:
    """The shard's documents in batches of about ``batch_bytes`` of input (the first of about
    ``first_batch_bytes`` when given)."""
    if shard.kind == "jsonl":
        for block in readers.jsonl_blocks(shard, max_bytes, batch_bytes, first_batch_bytes):
            if isinstance(block, bytearray):
                yield parse_jsonl(block, keys, max_bytes)
            else:
                yield from_records([block], keys)
        return
    records: list[readers.Record] = []
    size, limit = 0, first_batch_bytes or batch_bytes
    for record in readers.read_shard(shard, keys, max_bytes):
        records.append(record)
        size += sum(len(t) for t in record[0] or ())
        if size >= limit:
            yield from_records(records, keys)
            records, size, limit = [], 0, batch_bytes
    if records:
        yield from_records(records, keys)


def prefetched(items: Iterator[T], ahead: int = 2) -> Iterator[T]:
    """``items``, the next ``ahead`` made on a thread while the caller works on this one (two: a
    marker between two items, such as a shard's end, then does not stall the read-ahead)."""
    end: T = object()  # type: ignore[assignment]
    with ThreadPoolExecutor(1, thread_name_prefix="megacpt-read") as pool:
        upcoming = deque(pool.submit(next, items, end) for _ in range(ahead))
        while (item := upcoming.popleft().result()) is not end:
            upcoming.append(pool.submit(next, items, end))
            yield item


def parse_jsonl(block: bytes | bytearray, keys: Sequence[str], max_bytes: int) -> Batch:
    """A block of whole JSONL lines as a batch: scanned in C++ where its answer is certainly the
    reference reader's, the other lines read by the reference reader and put in their place."""
    scanned, counts, undecided = _jsonl_scan.scan(block, list(keys), max_bytes)
    skipped: Counter[str] = +Counter(counts)
    inserted: list[tuple[int, list[str]]] = []
    for start, end, position in undecided.tolist():
        texts, reason = readers.line_record(bytes(block[start:end]), keys, max_bytes)
        if texts is None:
            skipped[str(reason)] += 1
        else:
            inserted.append((position, texts))
    built = [TextColumn(*column) for column in scanned]
    if inserted:
        built = [column.spliced([(p, texts[i]) for p, texts in inserted]) for i, column in enumerate(built)]
    return Batch(built, skipped)
