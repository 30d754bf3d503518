"""Input formats for preprocessing: JSONL (plain, .gz, .zst), Parquet and plain text, split into shards.

A shard is the unit of work, of resume and of MPI distribution: a byte range of a plain JSONL
file (a line belongs to the shard holding its first byte), one Parquet row group, or one whole
compressed or text file. Reading a shard yields, in file order, either the texts of one record
or the reason it was skipped; nothing a reader meets in the data raises. Memory stays bounded:
a record over ``max_bytes`` (a JSONL line, a Parquet value, a text file) is skipped as too long
while being read, never held whole. Compressed files open through
``megacpt.inputs`` (a truncated or corrupt one is an error naming it, not a shorter dataset);
``pyarrow`` is the reference reader for Parquet; json comes from the standard library.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from megacpt.errors import UserError
from megacpt.inputs import COMPRESSIONS, JSONL_SUFFIXES, input_files, is_jsonl, open_binary

TEXT_SUFFIXES = (".txt", ".text", ".md")

# Why a record was skipped (the keys of the stats file's "skipped" table).
MALFORMED_JSON = "malformed_json"
MISSING_KEY = "missing_key"
NOT_A_STRING = "not_a_string"
INVALID_UTF8 = "invalid_utf8"
EMPTY = "empty"
TOO_LONG = "too_long"
BLANK_LINE = "blank_line"

BLOCK_BYTES = 16 << 20  # JSONL is read in blocks of whole lines of about this size


# One record read: (one text per key, None), or (None, the reason it was skipped).
Record = tuple[list[str] | None, str | None]


@dataclass(frozen=True)
class Shard:
    """One unit of work: ``kind`` is jsonl, parquet or text; ``start``/``end`` are byte offsets
    (plain JSONL) or row-group numbers (Parquet), ``0``/``-1`` for a whole file."""

    path: str
    kind: str
    start: int = 0
    end: int = -1


def _split_name(path: str) -> tuple[str, str]:
    """(format suffix, compression suffix) of a path, lower-cased."""
    base, ext = os.path.splitext(path.lower())
    compression = ext if ext in COMPRESSIONS else ""
    if compression:
        ext = os.path.splitext(base)[1]
    return ext, compression


def kind_of(path: str) -> str:
    """The format of an input file, from its name."""
    ext, compression = _split_name(path)
    if ext in JSONL_SUFFIXES:
        return "jsonl"
    if ext in TEXT_SUFFIXES:
        return "text"
    if ext == ".parquet" and not compression:
        return "parquet"
    raise UserError(
        f"cannot tell the format of {path}: expected .jsonl/.json/.ndjson or .txt/.text/.md "
        f"(optionally .gz or .zst), or .parquet"
    )


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Files named by ``patterns`` (paths, globs or directories), in the order given, each glob or
    directory sorted."""
    paths = input_files(patterns, _data_file, "JSONL or Parquet files")
    for path in paths:
        kind_of(path)
    return paths


def _data_file(path: str) -> bool:
    """What a directory contributes: JSONL and Parquet files (text, .json and .md files there are more
    often READMEs and configs than data: name them, or a glob of them, to read them)."""
    return is_jsonl(path) or path.lower().endswith(".parquet")


def plan_shards(paths: list[str], shard_bytes: int) -> list[Shard]:
    """Split the inputs into shards of about ``shard_bytes`` (plain JSONL) or one row group."""
    if shard_bytes <= 0:
        raise UserError("the shard size must be positive")
    shards: list[Shard] = []
    for path in paths:
        kind = kind_of(path)
        if kind == "parquet":
            import pyarrow.parquet as pq

            try:
                groups = pq.ParquetFile(path).num_row_groups
            except Exception as err:
                raise UserError(f"cannot read {path} as Parquet: {err}") from err
            shards.extend(Shard(path, kind, g, g + 1) for g in range(groups))
        elif kind == "jsonl" and not _split_name(path)[1]:
            size = os.path.getsize(path)
            starts = range(0, max(size, 1), shard_bytes)
            shards.extend(Shard(path, kind, s, min(s + shard_bytes, size)) for s in starts)
        else:
            shards.append(Shard(path, kind))
    return shards


def _texts(values: list[object], max_bytes: int) -> Record:
    """Check one record's values; (texts, None) when usable, else (None, reason)."""
    texts: list[str] = []
    for value in values:
        if value is None:
            return None, MISSING_KEY
        if not isinstance(value, str):
            return None, NOT_A_STRING
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates, e.g. from a "\ud800" escape
            return None, INVALID_UTF8
        if size > max_bytes:
            return None, TOO_LONG
        texts.append(value)
    if all(not t.strip() for t in texts):
        return None, EMPTY
    return texts, None


_MISSING = object()


def _json_record(line: bytes, keys: Sequence[str], max_bytes: int) -> Record:
    if not line.strip():
        return None, BLANK_LINE
    try:
        record = json.loads(line)  # bytes: decoded as UTF-8 (surrogates are caught by _texts)
    except UnicodeDecodeError:
        return None, INVALID_UTF8
    except ValueError:
        return None, MALFORMED_JSON
    if not isinstance(record, dict):
        return None, MALFORMED_JSON
    values = [record.get(k, _MISSING) for k in keys]
    if any(v is _MISSING for v in values):
        return None, MISSING_KEY
    return _texts(values, max_bytes)


def _skip_line(f: io.BufferedIOBase, limit: int | None = None) -> tuple[int, bool]:
    """Read past the next newline in bounded chunks, giving up after ``limit`` bytes;
    return (bytes consumed, whether a newline was found)."""
    skipped = 0
    while limit is None or skipped < limit:
        chunk = f.readline(1 << 20 if limit is None else min(1 << 20, limit - skipped))
        if not chunk:
            return skipped, False
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            return skipped, True
    return skipped, False


def too_long(line: bytes, max_bytes: int) -> bool:
    """Whether a JSONL line is over ``max_bytes`` (its newline not counted)."""
    return len(line) - line.endswith(b"\n") > max_bytes


def jsonl_blocks(
    shard: Shard, max_bytes: int, block_bytes: int, first_block_bytes: int | None = None
) -> Iterator[bytearray | Record]:
    """The shard's lines in file order, in blocks of whole lines of about ``block_bytes`` (the
    first of about ``first_block_bytes`` when given; a new bytearray each); a line over
    ``max_bytes`` that ends a block is not held whole but comes as ``(None, TOO_LONG)``."""
    with open_binary(shard.path) as f:
        end = shard.end if shard.end >= 0 else None
        pos = 0
        if shard.start > 0:  # skip the line that began in the previous shard
            f.seek(shard.start - 1)
            skipped, found = _skip_line(f, None if end is None else end - shard.start + 1)
            if not found:  # no line starts in this shard
                return
            pos = shard.start - 1 + skipped
        size = first_block_bytes or block_bytes
        while end is None or pos < end:
            # A fresh bytearray, read into and grown in place: one copy of the data, not three.
            block = bytearray(size if end is None else min(size, end - pos))
            size = block_bytes
            del block[f.readinto(block) :]
            if not block:
                return
            pos += len(block)
            cut = block.rfind(b"\n") + 1
            if cut == len(block):
                yield block
                continue
            # The last line began in this block (and so belongs to the shard): read it to its end.
            partial = len(block) - cut
            rest = f.readline(max(max_bytes + 1 - partial, 0))
            pos += len(rest)
            block += rest
            if len(block) - cut > max_bytes and not block.endswith(b"\n"):  # too long, still unread
                pos += _skip_line(f)[0]
                del block[cut:]
                if cut:
                    yield block
                yield None, TOO_LONG
            else:
                yield block


def line_record(line: bytes, keys: Sequence[str], max_bytes: int) -> Record:
    """One JSONL line (read whole) as a record."""
    return (None, TOO_LONG) if too_long(line, max_bytes) else _json_record(line, keys, max_bytes)


def _read_jsonl(shard: Shard, keys: Sequence[str], max_bytes: int) -> Iterator[Record]:
    for block in jsonl_blocks(shard, max_bytes, BLOCK_BYTES):
        if isinstance(block, bytearray):
            yield from (line_record(line, keys, max_bytes) for line in io.BytesIO(block))
        else:
            yield block


def _read_text(shard: Shard, max_bytes: int) -> Iterator[Record]:
    with open_binary(shard.path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield None, TOO_LONG
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        yield None, INVALID_UTF8
        return
    yield _texts([text], max_bytes)


def _read_parquet(shard: Shard, keys: Sequence[str], max_bytes: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(shard.path)
    present = [k for k in keys if k in pf.schema_arrow.names]
    if len(present) < len(keys):
        for _ in range(pf.metadata.row_group(shard.start).num_rows):
            yield None, MISSING_KEY
        return
    for batch in pf.iter_batches(batch_size=1024, row_groups=[shard.start], columns=keys):
        columns = [batch.column(k).to_pylist() for k in keys]
        for values in zip(*columns):
            yield _texts(list(values), max_bytes)


def read_shard(shard: Shard, keys: Sequence[str], max_bytes: int) -> Iterator[Record]:
    """Yield ``(texts, None)`` for each usable record (one text per key) or ``(None, reason)``."""
    if shard.kind == "jsonl":
        return _read_jsonl(shard, keys, max_bytes)
    if shard.kind == "parquet":
        return _read_parquet(shard, keys, max_bytes)
    return _read_text(shard, max_bytes)
