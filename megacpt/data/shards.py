"""One shard of a preprocessing run: tokenised into its own datasets, then recorded as done.

A shard's datasets live under the run's work directory (``shard-<index>_<key>.{bin,idx}`` and its
document sizes); its record (``shard-<index>.json``, written last and atomically) is what makes it
count as done, so a killed run redoes only the shards without one. A run that does its shards in
order in one process puts their tokens one after another into one file per key
(``merged_<key>.bin``, the merged dataset's), so that merging copies no token. Batch n is written
on a thread while batch n + 1 is encoded. ``ProgressBar`` reports the run's progress as
documents/s, tokens/s and MB/s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from megacpt.atomic import write_json_atomic
from megacpt.data import columns, doc_bytes, readers
from megacpt.data.config import PreprocessConfig
from megacpt.data.indexed import IndexedWriter, optimal_dtype
from megacpt.tokenizer.encoders import TextTokenizer


@dataclass
class ShardStats:
    """What one shard produced; summed over shards into the stats file."""

    documents: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    characters: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, other: ShardStats) -> None:
        self.documents += other.documents
        for name in ("tokens", "bytes", "characters", "skipped"):
            mine = getattr(self, name)
            for key, value in getattr(other, name).items():
                mine[key] = mine.get(key, 0) + value


Progress = Callable[[int, int, int], None]  # documents, tokens, bytes since the last call
FIRST_BATCH_BYTES = 1 << 20  # the run's first batch: encoding starts once it is read


def shard_prefix(work_dir: str, index: int, key: str) -> str:
    return os.path.join(work_dir, f"shard-{index:05d}_{key}")


def merged_prefix(work_dir: str, key: str) -> str:
    """The merged dataset for ``key`` before it is published (and the one token file of its shards)."""
    return os.path.join(work_dir, f"merged_{key}")


def record_path(work_dir: str, index: int) -> str:
    return os.path.join(work_dir, f"shard-{index:05d}.json")


def read_ahead(cfg: PreprocessConfig, shards: list[readers.Shard]) -> Iterator[Iterator[columns.Batch]]:
    """Each shard's batches, shard after shard; the next batch, across shard ends, is read on a
    thread while the caller encodes this one. The first batch is small (``FIRST_BATCH_BYTES``), so
    that encoding starts without waiting for a whole batch to be read."""

    def every_batch() -> Iterator[columns.Batch | None]:
        for i, shard in enumerate(shards):
            first = min(FIRST_BATCH_BYTES, cfg.batch_bytes) if i == 0 else None
            yield from columns.batches(shard, cfg.json_keys, cfg.max_document_bytes, cfg.batch_bytes, first)
            yield None  # the shard's end

    stream = columns.prefetched(every_batch())
    for _ in shards:
        yield iter(stream.__next__, None)


def process_shard(
    cfg: PreprocessConfig,
    shard: readers.Shard,
    index: int,
    work_dir: str,
    tok: TextTokenizer,
    progress: Progress,
    batches: Iterable[columns.Batch] | None = None,
    tokens_at: dict[str, int] | None = None,
) -> ShardStats:
    """Tokenise one shard (``batches``: its batches, read here when None) into one dataset per key,
    then record it as done. With ``tokens_at``, each key's tokens go into ``merged_<key>.bin`` from
    that byte offset on, not into the shard's own ``.bin``."""
    keys = cfg.json_keys
    dtype = optimal_dtype(tok.vocab_size)
    eod = tok.eod_id if cfg.append_eod else None
    stats = ShardStats(
        tokens=dict.fromkeys(keys, 0), bytes=dict.fromkeys(keys, 0), characters=dict.fromkeys(keys, 0)
    )
    skipped: Counter[str] = Counter()
    writers = [
        IndexedWriter(shard_prefix(work_dir, index, key), dtype)
        if tokens_at is None
        else IndexedWriter(
            shard_prefix(work_dir, index, key), dtype, merged_prefix(work_dir, key) + ".bin", tokens_at[key]
        )
        for key in keys
    ]
    sizes = [doc_bytes.ShardDocBytes(shard_prefix(work_dir, index, key)) for key in keys]

    def write(batch: columns.Batch, encoded: list[tuple[np.ndarray, np.ndarray] | list[list[int]]]) -> None:
        skipped.update(batch.skipped)
        tokens = text_bytes = 0
        for key, column, ids, writer, recorder in zip(keys, batch.columns, encoded, writers, sizes):
            before = writer.tokens
            if isinstance(ids, tuple):
                writer.add_documents(*ids, eod)
            else:
                writer.add_lists(ids, eod)
            size = recorder.add(column.byte_lengths())
            stats.tokens[key] += writer.tokens - before
            stats.bytes[key] += size
            stats.characters[key] += column.characters
            tokens += writer.tokens - before
            text_bytes += size
        stats.documents += len(batch)
        progress(len(batch), tokens, text_bytes)

    try:
        if batches is None:
            batches = next(read_ahead(cfg, [shard]))
        # Batch n is written on a thread while batch n + 1 is encoded.
        with ThreadPoolExecutor(1, thread_name_prefix="megacpt-write") as pool:
            written: Future[None] | None = None
            for batch in batches:
                encoded = [
                    tok.encode_flat(column)
                    if tok.encode_flat is not None
                    else tok.encode_batch(column.texts())
                    for column in batch.columns
                ]
                if written is not None:
                    written.result()
                written = pool.submit(write, batch, encoded)
            if written is not None:
                written.result()
        for writer, recorder in zip(writers, sizes):
            writer.finalize()
            recorder.finalize()
    except BaseException:
        for writer, recorder in zip(writers, sizes):
            writer.abort()
            recorder.abort()
        raise
    stats.skipped = dict(sorted(skipped.items()))
    write_json_atomic(record_path(work_dir, index), {"shard": asdict(shard), **asdict(stats)})
    return stats


def shard_done(cfg: PreprocessConfig, work_dir: str, index: int, one_token_file: bool) -> ShardStats | None:
    """The stats of shard ``index`` if it is recorded as done (and its files are there), else None."""
    try:
        with open(record_path(work_dir, index), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    for key in cfg.json_keys:
        prefix = shard_prefix(work_dir, index, key)
        own = (".idx", doc_bytes.SHARD_SUFFIX) if one_token_file else (".idx", ".bin", doc_bytes.SHARD_SUFFIX)
        if not all(os.path.isfile(prefix + ext) for ext in own):
            return None
    record.pop("shard")
    return ShardStats(**record)


class ProgressBar:
    """Progress as documents/s, tokens/s and MB/s (tqdm) on stderr, and a plain line every
    ``log_interval`` documents (Megatron-LM's ``--log-interval``)."""

    def __init__(self, enabled: bool, shards: int, log_interval: int | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=shards, unit="shard", disable=not enabled, dynamic_ncols=True)
        self._start = self._shown = time.monotonic()
        self.documents = self.tokens = self.bytes = 0
        self._log_interval = log_interval if enabled else None
        self._logged = 0

    def __call__(self, documents: int, tokens: int, nbytes: int) -> None:
        self.documents += documents
        self.tokens += tokens
        self.bytes += nbytes
        elapsed = max(time.monotonic() - self._start, 1e-9)
        if self._log_interval and self.documents // self._log_interval > self._logged:
            self._logged = self.documents // self._log_interval
            print(
                f"processed {self.documents:,} documents ({self.documents / elapsed:,.0f} docs/s, "
                f"{self.bytes / elapsed / 1e6:.1f} MB/s)",
                file=sys.stderr,
                flush=True,
            )
        if time.monotonic() - self._shown < 0.5:
            return
        self._shown = time.monotonic()
        self._bar.set_postfix_str(
            f"{self.documents / elapsed:,.0f} docs/s, {self.tokens / elapsed:,.0f} tok/s, "
            f"{self.bytes / elapsed / 1e6:.1f} MB/s"
        )

    def shard_done(self) -> None:
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
