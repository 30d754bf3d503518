"""Publishing a finished run: the shards' indices (and, with ``--keep-shards``, their tokens) merged
in plan order under temporary names, renamed into place, and the stats file written last.

The stats file is the run's completion mark: it goes first and comes back last, so a reader or a
rerun never takes a half-published ``.bin``/``.idx`` pair for a dataset.
"""

from __future__ import annotations

import os
from typing import Any

from megacpt.atomic import write_json_atomic
from megacpt.data import doc_bytes
from megacpt.data.config import PreprocessConfig
from megacpt.data.indexed import max_token_id, merge
from megacpt.data.preprocess.plan import (
    Plan,
    ShardStats,
    merged_prefix,
    output_prefix,
    shard_done,
    shard_prefix,
    work_dir_of,
)
from megacpt.errors import UserError


def _totals(cfg: PreprocessConfig, plan: Plan) -> ShardStats:
    total = ShardStats()
    for index in range(len(plan.shards)):
        done = shard_done(cfg, work_dir_of(cfg), index, plan.one_token_file)
        if done is None:
            raise RuntimeError(f"shard {index} has no record in {work_dir_of(cfg)}")
        total.add(done)
    if total.documents == 0:
        reasons = (
            ", ".join(f"{k}: {v:,}" for k, v in sorted(total.skipped.items()))
            or "the inputs hold no documents"
        )
        raise UserError(
            f"no document written: every line was skipped ({reasons}); check --input and --json-keys"
        )
    return total


def publish(
    cfg: PreprocessConfig, plan: Plan, settings: dict[str, Any], ranks: int, backend: str
) -> dict[str, Any]:
    """Merge the shards in order, publish the datasets, and write and return the stats."""
    total = _totals(cfg, plan)
    work_dir = work_dir_of(cfg)
    staged = {key: merged_prefix(work_dir, key) for key in cfg.json_keys}
    shards = range(len(plan.shards))
    for key in cfg.json_keys:
        merge(staged[key], [shard_prefix(work_dir, i, key) for i in shards], plan.one_token_file)
        doc_bytes.merge(staged[key], [shard_prefix(work_dir, i, key) for i in shards])
    eods = total.documents if cfg.append_eod else 0
    per_key = {
        key: {
            "max_token_id": max_token_id(staged[key]),
            "tokens": total.tokens[key],
            "bytes": total.bytes[key],
            "characters": total.characters[key],
            "characters_per_token": round(total.characters[key] / max(total.tokens[key] - eods, 1), 4),
            "dataset": output_prefix(cfg, key),
        }
        for key in cfg.json_keys
    }
    stats = {
        "documents": total.documents,
        "tokens": sum(total.tokens.values()),
        "bytes": sum(total.bytes.values()),
        "characters": sum(total.characters.values()),
        "characters_per_token": round(
            sum(total.characters.values()) / max(sum(total.tokens.values()) - eods * len(cfg.json_keys), 1), 4
        ),
        "skipped": dict(sorted(total.skipped.items())),
        "skipped_total": sum(total.skipped.values()),
        "per_key": per_key,
        "shards": len(plan.shards),
        "ranks": ranks,
        "backend": backend,
        "settings": settings,
    }
    stats_path = cfg.output_prefix + ".stats.json"
    if os.path.exists(stats_path):
        os.remove(stats_path)
    for key in cfg.json_keys:
        for suffix in (doc_bytes.SUFFIX, ".bin", ".idx"):
            os.replace(staged[key] + suffix, output_prefix(cfg, key) + suffix)
    write_json_atomic(stats_path, stats)
    return stats
