"""Documents as Arrow string columns: what preprocessing encodes and measures, one column per JSON key.

A block of whole JSONL lines is parsed by pyarrow's JSON reader (C++, on all cores; chosen because
pyarrow is already the Parquet reader, and its columns hand gigatoken their UTF-8 buffers without a
Python string per document). The reference reader's record checks (``readers``: missing key,
empty) then run on whole columns. Where pyarrow could read a block differently from Python's
``json`` (raw control bytes, a line with two objects, a non-string value, a duplicate key, a lone
surrogate, invalid UTF-8, anything pyarrow refuses), the block goes through the reference reader
line by line instead, so both give the same documents and the same skip counts.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from megacpt.data import readers


def string_column(texts: list[str]) -> pa.LargeStringArray:
    """``texts`` as an Arrow column (built from its buffers: ``pa.array`` would import pandas)."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.LargeStringArray.from_buffers(
        len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
    )


# Every character Python's str.strip() removes (all in the BMP): a document of only these is empty.
_WHITESPACE = string_column(["", *(c for c in map(chr, range(0x10000)) if c.isspace())])
_PRINTABLE = bytes(range(0x20, 0x100))


@dataclass
class Batch:
    """The kept documents of some records, one column per key, and why the others were skipped."""

    columns: list[pa.LargeStringArray]
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.columns[0])


def byte_lengths(column: pa.LargeStringArray) -> np.ndarray:
    """Each document's size in UTF-8 bytes (int64), from the column's offsets."""
    return np.diff(_offsets(column))


def characters(column: pa.LargeStringArray) -> int:
    return int(pc.sum(pc.utf8_length(column)).as_py() or 0)


def _offsets(column: pa.LargeStringArray) -> np.ndarray:
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)
    return offsets[column.offset : column.offset + len(column) + 1]


def utf8_buffers(column: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, data)``: int64 offsets into the column's UTF-8 bytes, without a copy."""
    data = column.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return _offsets(column), chars


def from_records(records: Iterable[readers.Record], keys: list[str]) -> Batch:
    """The reference reader's records (texts or a skip reason) as a batch."""
    kept: list[list[str]] = [[] for _ in keys]
    skipped: Counter[str] = Counter()
    for texts, reason in records:
        if texts is None:
            skipped[str(reason)] += 1
            continue
        for column, text in zip(kept, texts):
            column.append(text)
    return Batch([string_column(column) for column in kept], skipped)


def batches(shard: readers.Shard, keys: list[str], max_bytes: int, batch_bytes: int) -> Iterator[Batch]:
    """The shard's documents in batches of about ``batch_bytes`` of input."""
    if shard.kind == "jsonl":
        for block in readers.jsonl_blocks(shard, max_bytes, batch_bytes):
            if isinstance(block, bytes):
                yield parse_jsonl(block, keys, max_bytes)
            else:
                yield from_records([block], keys)
        return
    records: list[readers.Record] = []
    size = 0
    for record in readers.read_shard(shard, keys, max_bytes):
        records.append(record)
        size += sum(len(t) for t in record[0] or ())
        if size >= batch_bytes:
            yield from_records(records, keys)
            records, size = [], 0
    if records:
        yield from_records(records, keys)


def prefetched(batches: Iterator[Batch]) -> Iterator[Batch]:
    """``batches``, the next one read and parsed on a thread while the caller encodes this one."""
    end = Batch([])
    with ThreadPoolExecutor(1, thread_name_prefix="megacpt-read") as pool:
        upcoming = pool.submit(next, batches, end)
        while (batch := upcoming.result()) is not end:
            upcoming = pool.submit(next, batches, end)
            yield batch


def parse_jsonl(block: bytes, keys: list[str], max_bytes: int) -> Batch:
    """A block of whole JSONL lines as a batch: by pyarrow where it must agree with Python's
    ``json``, else by the reference reader line by line."""
    parsed = _arrow_columns(block, keys, max_bytes)
    if parsed is None:
        return from_records((readers.line_record(line, keys, max_bytes) for line in io.BytesIO(block)), keys)
    return parsed


def _line_checks(block: bytes, max_bytes: int) -> tuple[int, int] | None:
    """``(lines, blank lines)`` of ``block``; None where pyarrow's and Python's JSON could differ
    (control bytes other than a newline and a CR before it, invalid UTF-8) or a line is over
    ``max_bytes``."""
    if not block:
        return None
    controls = block.translate(None, _PRINTABLE)
    if controls.translate(None, b"\r\n") or (
        b"\r" in controls and controls.count(b"\r") != block.count(b"\r\n")
    ):
        return None
    if not _valid_utf8(block):  # json reads such a line as invalid_utf8; pyarrow may take it
        return None
    raw = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(raw == 0x0A)
    if not block.endswith(b"\n"):
        ends = np.append(ends, len(block))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    if len(lengths) and lengths.max() > max_bytes:
        return None
    first = raw[starts]  # a line's first byte (its newline when empty)
    maybe_blank = np.flatnonzero((lengths == 0) | (first == 0x20) | (first == 0x0D))
    blank = sum(not block[starts[i] : ends[i]].strip() for i in maybe_blank)
    return len(lengths), blank


def _valid_utf8(block: bytes) -> bool:
    offsets = pa.py_buffer(np.array([0, len(block)], dtype=np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(block)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _arrow_columns(block: bytes, keys: list[str], max_bytes: int) -> Batch | None:
    checked = _line_checks(block, max_bytes)
    if checked is None:
        return None
    lines, blank = checked
    schema = pa.schema([(key, pa.large_string()) for key in keys])
    try:
        table = pa_json.read_json(
            pa.BufferReader(block),
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, len(block) // 8 + 1)),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except Exception:  # any refusal: pyarrow and json might differ here, the reference reads it
        return None
    if table.num_rows != lines - blank:  # some line held several objects: malformed for json
        return None
    # No text is over max_bytes: no line is (_line_checks), and JSON spells no character in fewer
    # bytes than UTF-8 does. Arrow's null is json's missing key or null value, both "missing_key".
    columns = [table.column(key).combine_chunks() for key in keys]
    missing = np.zeros(table.num_rows, dtype=bool)
    maybe_empty = np.ones(table.num_rows, dtype=bool)
    for column in columns:
        missing |= column.is_null().to_numpy(zero_copy_only=False)
        first = pc.utf8_slice_codeunits(column, 0, 1)
        maybe_empty &= pc.fill_null(pc.is_in(first, value_set=_WHITESPACE), False).to_numpy(
            zero_copy_only=False
        )
    empty = np.zeros(table.num_rows, dtype=bool)
    for row in np.flatnonzero(maybe_empty & ~missing):
        empty[row] = all(not column[row].as_py().strip() for column in columns)
    skipped = Counter(
        {
            readers.BLANK_LINE: blank,
            readers.MISSING_KEY: int(missing.sum()),
            readers.EMPTY: int(empty.sum()),
        }
    )
    dropped = missing | empty
    if not dropped.any():
        return Batch(columns, +skipped)
    keep = pa.py_buffer(np.packbits(~dropped, bitorder="little"))
    mask = pa.BooleanArray.from_buffers(pa.bool_(), table.num_rows, [None, keep])
    return Batch([column.filter(mask) for column in columns], +skipped)
