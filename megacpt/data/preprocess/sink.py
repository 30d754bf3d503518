"""Where the tokens go: one sink per run, chosen once, writing the shards in plan order.

Every encoding process (this one's thread, a pool worker, another MPI rank) sends its stream of
encoded batches to the one sink, in the main process of rank 0, which takes the shards in plan
order from whichever stream holds each. With one token file per key (every run but
``--keep-shards``) each shard's tokens go into ``merged_<key>.bin`` right after the previous
shard's, so that publishing copies no token, however many processes encoded them; with
``--keep-shards`` each shard gets its own ``.bin``, kept beside the merged dataset. A shard's small
``.idx`` and document sizes are its own either way, and its record (written last, atomically) makes
it count as done.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict

from megacpt.atomic import write_json_atomic
from megacpt.data import doc_bytes
from megacpt.data.config import PreprocessConfig
from megacpt.data.indexed import IndexedWriter, optimal_dtype
from megacpt.data.preprocess.encode import Encoded, Item
from megacpt.data.preprocess.plan import (
    ShardStats,
    Task,
    merged_prefix,
    record_path,
    shard_prefix,
    token_bytes,
    work_dir_of,
)
from megacpt.data.preprocess.progress import ProgressBar
from megacpt.tokenizer.encoders import TextTokenizer


class Sink:
    """Writes shards from their streams, in order; ``tokens_at`` (one token file per key) is where
    each key's next shard starts in its file, None for a ``.bin`` per shard."""

    def __init__(
        self, cfg: PreprocessConfig, tok: TextTokenizer, tokens_at: dict[str, int] | None, bar: ProgressBar
    ) -> None:
        self.cfg, self.bar, self.tokens_at = cfg, bar, tokens_at
        self.work_dir = work_dir_of(cfg)
        self.vocab_size = tok.vocab_size
        self.eod = tok.eod_id if cfg.append_eod else None

    def write(self, tasks: list[Task], stream_of: Callable[[int], Iterator[Item]]) -> None:
        """Write ``tasks`` in order, the ``k``-th from the stream ``stream_of(k)``."""
        for k, (index, shard) in enumerate(tasks):
            stats = self._write_shard(index, _shard_items(stream_of(k), index))
            write_json_atomic(record_path(self.work_dir, index), {"shard": asdict(shard), **asdict(stats)})
            if self.tokens_at is not None:
                self.tokens_at = {
                    key: at + token_bytes(stats, key, self.vocab_size) for key, at in self.tokens_at.items()
                }
            self.bar.shard_done()

    def _write_shard(self, index: int, batches: Iterator[Encoded]) -> ShardStats:
        keys = self.cfg.json_keys
        dtype = optimal_dtype(self.vocab_size)
        writers = [
            IndexedWriter(shard_prefix(self.work_dir, index, key), dtype)
            if self.tokens_at is None
            else IndexedWriter(
                shard_prefix(self.work_dir, index, key),
                dtype,
                merged_prefix(self.work_dir, key) + ".bin",
                self.tokens_at[key],
            )
            for key in keys
        ]
        sizes = [doc_bytes.ShardDocBytes(shard_prefix(self.work_dir, index, key)) for key in keys]
        stats = ShardStats(
            tokens=dict.fromkeys(keys, 0), bytes=dict.fromkeys(keys, 0), characters=dict.fromkeys(keys, 0)
        )
        skipped: Counter[str] = Counter()
        try:
            for batch in batches:
                skipped.update(batch.skipped)
                tokens = text_bytes = 0
                for key, part, writer, recorder in zip(keys, batch.keys, writers, sizes):
                    before = writer.tokens
                    if isinstance(part.ids, tuple):
                        writer.add_documents(*part.ids, self.eod)
                    else:
                        writer.add_lists(part.ids, self.eod)
                    size = recorder.add(part.byte_lengths)
                    stats.tokens[key] += writer.tokens - before
                    stats.bytes[key] += size
                    stats.characters[key] += part.characters
                    tokens += writer.tokens - before
                    text_bytes += size
                stats.documents += batch.documents
                self.bar(batch.documents, tokens, text_bytes)
            for writer, recorder in zip(writers, sizes):
                writer.finalize()
                recorder.finalize()
        except BaseException:
            for writer, recorder in zip(writers, sizes):
                writer.abort()
                recorder.abort()
            raise
        stats.skipped = dict(sorted(skipped.items()))
        return stats


def _shard_items(stream: Iterator[Item], index: int) -> Iterator[Encoded]:
    """Shard ``index``'s batches from ``stream``, up to and including its end marker."""
    for got, batch in stream:
        if got != index:
            raise RuntimeError(f"expected shard {index}'s batches, got shard {got}'s")
        if batch is None:
            return
        yield batch
    raise RuntimeError(f"the stream ended before shard {index} did")
