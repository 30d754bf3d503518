"""A preprocessing run's plan: what its output depends on, its shards, where its files go, and
where a rerun resumes.

The work directory ``<output_prefix>.shards/`` holds ``plan.json`` (the settings and the shards,
written once), one record per finished shard (``shard-<index>.json``, written last and atomically)
and the shards' small index files. With one token file per key (every run but ``--keep-shards``),
the shards' tokens lie one after another in ``merged_<key>.bin``, so a rerun resumes at the first
shard without a record, or whose tokens that file no longer holds, and cuts the file there.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from megacpt.atomic import write_json_atomic
from megacpt.data import doc_bytes, readers
from megacpt.data.config import MiB, PreprocessConfig
from megacpt.data.indexed import optimal_dtype, validate
from megacpt.errors import UserError
from megacpt.tokenizer.encoders import TextTokenizer


@dataclass
class ShardStats:
    """What one shard produced (its record); summed over shards into the stats file."""

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


@dataclass(frozen=True)
class Plan:
    """The run's shards, and whether their tokens go into one file per key (else each its own)."""

    shards: list[readers.Shard]
    one_token_file: bool


Task = tuple[int, readers.Shard]  # a shard and its index in the plan


def output_prefix(cfg: PreprocessConfig, key: str) -> str:
    """Where the dataset for ``key`` is written (Megatron-LM's ``<prefix>_<key>_document``)."""
    return f"{cfg.output_prefix}_{key}_document"


def work_dir_of(cfg: PreprocessConfig) -> str:
    return cfg.output_prefix + ".shards"


def shard_prefix(work_dir: str, index: int, key: str) -> str:
    return os.path.join(work_dir, f"shard-{index:05d}_{key}")


def merged_prefix(work_dir: str, key: str) -> str:
    """The merged dataset for ``key`` before it is published (and the one token file of its shards)."""
    return os.path.join(work_dir, f"merged_{key}")


def record_path(work_dir: str, index: int) -> str:
    return os.path.join(work_dir, f"shard-{index:05d}.json")


def load_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def settings_of(cfg: PreprocessConfig, tok: TextTokenizer, paths: list[str]) -> dict[str, Any]:
    """Everything the output depends on; a resume is allowed only when it is unchanged."""
    return {
        "inputs": [[os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns] for p in paths],
        "json_keys": list(cfg.json_keys),
        "tokenizer": os.path.abspath(cfg.tokenizer),
        "tokenizer_kind": cfg.tokenizer_kind,
        "merge_file": os.path.abspath(cfg.merge_file) if cfg.merge_file else None,
        "tiktoken_encoding": cfg.tiktoken_encoding,
        "vocab_size": tok.vocab_size,
        "eod_id": tok.eod_id,
        "dtype": optimal_dtype(tok.vocab_size).__name__,
        "append_eod": cfg.append_eod,
        "max_document_bytes": cfg.max_document_bytes,
        "shard_bytes": cfg.shard_bytes,
    }


def load_or_make(
    cfg: PreprocessConfig, settings: dict[str, Any], paths: list[str], processes: int, whole_batches: bool
) -> Plan:
    """The plan recorded by an unfinished run with the same settings, or a new one. With
    ``whole_batches`` (encoding on one process's threads, so shards serve only to resume a killed
    run), the automatic shard size is 64 MiB in whole batches: each shard's end costs an fsync, and
    a short batch a read-ahead wait; otherwise about 8 shards per encoding process."""
    work_dir = work_dir_of(cfg)
    plan_path = os.path.join(work_dir, "plan.json")
    recorded = load_json(plan_path)
    if recorded is not None:
        if recorded["settings"] != settings:
            raise UserError(
                f"{work_dir} holds an unfinished run with other inputs or settings; "
                f"rerun with those, or delete {work_dir} to start over"
            )
        return Plan([readers.Shard(**s) for s in recorded["shards"]], recorded.get("one_token_file", False))
    os.makedirs(work_dir, exist_ok=True)
    shard_bytes = cfg.shard_bytes
    total = sum(os.path.getsize(p) for p in paths)
    if shard_bytes is None and whole_batches:
        shard_bytes = -(-64 * MiB // cfg.batch_bytes) * cfg.batch_bytes
    elif shard_bytes is None:  # enough shards to keep every process busy to the end
        shard_bytes = min(max(total // (8 * processes), MiB), 64 * MiB)
    shard_bytes = max(1, min(shard_bytes, -(-total // cfg.min_shards)))
    plan = Plan(readers.plan_shards(paths, shard_bytes), not cfg.keep_shards)
    write_json_atomic(
        plan_path,
        {
            "settings": settings,
            "one_token_file": plan.one_token_file,
            "shards": [asdict(s) for s in plan.shards],
        },
    )
    return plan


def shard_done(cfg: PreprocessConfig, work_dir: str, index: int, one_token_file: bool) -> ShardStats | None:
    """The stats of shard ``index`` if it is recorded as done (and its files are there), else None."""
    record = load_json(record_path(work_dir, index))
    if record is None:
        return None
    own = (".idx", doc_bytes.SHARD_SUFFIX) if one_token_file else (".idx", ".bin", doc_bytes.SHARD_SUFFIX)
    for key in cfg.json_keys:
        if not all(os.path.isfile(shard_prefix(work_dir, index, key) + ext) for ext in own):
            return None
    record.pop("shard")
    return ShardStats(**record)


def token_bytes(stats: ShardStats, key: str, vocab_size: int) -> int:
    """How many bytes of ``key``'s token file the shard of ``stats`` holds."""
    return stats.tokens[key] * np.dtype(optimal_dtype(vocab_size)).itemsize


def to_do(cfg: PreprocessConfig, plan: Plan, vocab_size: int) -> tuple[list[Task], dict[str, int] | None]:
    """The shards left to do, in order, and (one token file per key) the byte offset in each key's
    file where the first of them starts. In one token file, a rerun starts at the first shard
    that is not recorded, or whose tokens the file no longer holds; later records are dropped
    (their tokens would follow lost ones)."""
    work_dir = work_dir_of(cfg)
    if not plan.one_token_file:
        return [
            (i, s) for i, s in enumerate(plan.shards) if shard_done(cfg, work_dir, i, False) is None
        ], None
    held = {}
    for key in cfg.json_keys:
        path = merged_prefix(work_dir, key) + ".bin"
        held[key] = os.path.getsize(path) if os.path.isfile(path) else 0
    tokens_at = dict.fromkeys(cfg.json_keys, 0)
    first = 0
    while first < len(plan.shards) and (done := shard_done(cfg, work_dir, first, True)) is not None:
        ends = {key: at + token_bytes(done, key, vocab_size) for key, at in tokens_at.items()}
        if any(ends[key] > held[key] for key in ends):
            break
        tokens_at = ends
        first += 1
    for index in range(first, len(plan.shards)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(record_path(work_dir, index))
    return list(enumerate(plan.shards))[first:], tokens_at


def published(cfg: PreprocessConfig, stats: dict[str, Any]) -> bool:
    """Whether every output dataset is the complete, consistent one ``stats`` describes."""
    for key in cfg.json_keys:
        prefix = output_prefix(cfg, key)
        try:
            index = validate(prefix)
        except UserError:
            return False
        sizes = doc_bytes.read(prefix)
        if (
            len(index.document_indices) - 1 != stats.get("documents")
            or sizes is None
            or len(sizes) != stats["documents"]
        ):
            return False
    return True
