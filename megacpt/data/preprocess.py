"""Tokenise a text corpus into Megatron-core indexed datasets, in parallel, resumably, across MPI ranks.

The pipeline: the inputs are split into shards (``readers.plan_shards``); each shard is read,
tokenised in batches and streamed by the C++ writer into its own small dataset under
``<output_prefix>.shards/``, whose completion is recorded by a per-shard stats file written last.
When every shard is done, the shard datasets are merged in input order into
``<output_prefix>_<key>_document.{bin,idx}`` (Megatron-LM's naming) and the totals are written to
``<output_prefix>.stats.json``. A rerun skips the shards already recorded, so a run killed at any
point and rerun yields the same bytes as one that was never interrupted. A run planned for one
process (no MPI, shards in order) writes every shard's tokens into the merged ``.bin`` directly
(``shards.merged_prefix``); a rerun cuts that file back to the end of its last recorded shard.

Shards are read in blocks of whole records (``columns``: a C++ scanner reads JSONL into text
columns). With gigatoken, parsing and encoding run on ``workers`` threads of one process and the
shards are done in order; with the other tokenizers, which hold the GIL, each worker process
(``multiprocessing``, spawn) takes one shard at a time. Under ``mpirun`` (``mpi4py``), ranks take
shards round-robin and rank 0 merges. Tokenisers come from ``megacpt.tokenizer.encoders``; ``append_eod``
appends the tokenizer's end-of-sequence id after each document.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from megacpt.atomic import check_writable, write_json_atomic
from megacpt.data import doc_bytes, readers
from megacpt.data.config import MiB, PreprocessConfig
from megacpt.data.indexed import max_token_id, merge, optimal_dtype, validate
from megacpt.data.shards import (
    ProgressBar,
    ShardStats,
    merged_prefix,
    process_shard,
    read_ahead,
    record_path,
    shard_done,
    shard_prefix,
)
from megacpt.errors import UserError
from megacpt.processes import die_with_parent
from megacpt.tokenizer.encoders import TextTokenizer, load_tokenizer

# ---------------------------------------------------------------- worker pool

_WORKER: dict[str, Any] = {}


def _init_worker(cfg: PreprocessConfig, work_dir: str, reports: Any, backend: str, parent: int) -> None:
    die_with_parent(parent)  # a killed run's workers must not keep writing its partial files
    _WORKER.update(cfg=cfg, work_dir=work_dir, reports=reports, tok=_load(cfg, backend))


def _load(cfg: PreprocessConfig, backend: str, sample: list[str] | None = None) -> TextTokenizer:
    """The tokenizer; ``backend`` ``auto`` checks gigatoken against the reference on ``sample``."""
    return load_tokenizer(
        cfg.tokenizer,
        cfg.tokenizer_kind,
        backend,
        sample or [],
        merge_file=cfg.merge_file,
        tiktoken_encoding=cfg.tiktoken_encoding,
    )


def _sample(
    paths: list[str], keys: list[str], max_bytes: int, count: int = 64, characters: int = 100_000
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


def _worker_shard(task: tuple[int, readers.Shard]) -> tuple[int, ShardStats]:
    index, shard = task
    reports = _WORKER["reports"]
    stats = process_shard(
        _WORKER["cfg"], shard, index, _WORKER["work_dir"], _WORKER["tok"], lambda *d: reports.put(d)
    )
    return index, stats


def threaded(tok: TextTokenizer) -> bool:
    """Whether ``tok`` encodes on threads (gigatoken), so that one process uses every worker."""
    return tok.backend == "gigatoken"


def run_shards(
    cfg: PreprocessConfig,
    tasks: list[tuple[int, readers.Shard]],
    work_dir: str,
    tok: TextTokenizer,
    bar: ProgressBar,
    tokens_at: dict[str, int] | None = None,
) -> None:
    """Process ``tasks`` in this process, or in a pool of ``cfg.workers`` processes.

    gigatoken runs on ``cfg.workers`` threads of this process (``run`` sizes its pool), so with it
    the shards are done here, one after the other, the next batch read ahead on a thread; the other
    tokenizers hold the GIL and get a process pool. With ``tokens_at`` (the byte offset in each
    key's one token file where the first task's tokens go), the tasks are done here, in order.

    A pool worker that dies (killed, out of memory) fails the run with BrokenProcessPool rather
    than hanging it; the shards finished so far stay recorded for the rerun.
    """
    if tokens_at is not None or cfg.workers == 1 or len(tasks) <= 1 or threaded(tok):
        for (index, shard), batches in zip(tasks, read_ahead(cfg, [shard for _, shard in tasks])):
            stats = process_shard(cfg, shard, index, work_dir, tok, bar, batches, tokens_at)
            if tokens_at is not None:
                tokens_at = _after(tokens_at, stats, tok)
            bar.shard_done()
        return
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    workers = min(cfg.workers, len(tasks))
    with ProcessPoolExecutor(
        workers,
        ctx,
        initializer=_init_worker,
        initargs=(
            cfg,
            work_dir,
            reports,
            "gigatoken" if tok.backend == "gigatoken" else "reference",
            os.getpid(),
        ),
    ) as pool:
        pending = {pool.submit(_worker_shard, task) for task in tasks}
        try:
            while pending:
                with contextlib.suppress(queue.Empty):
                    while True:
                        bar(*reports.get(timeout=0.2))
                done, pending = wait(pending, timeout=0, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # re-raises a worker's exception here
                    bar.shard_done()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


# ---------------------------------------------------------------- the whole run


def launched_rank() -> int:
    """This process's MPI rank as set by the launcher (0 when not launched by mpirun)."""
    return int(next((os.environ[v] for v in ("OMPI_COMM_WORLD_RANK", "PMI_RANK") if v in os.environ), "0"))


def _mpi_comm() -> Any:
    """MPI.COMM_WORLD when launched by mpirun with several ranks, else None."""
    size = next((os.environ[v] for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE") if v in os.environ), "1")
    if int(size) <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise UserError(
            f"launched as {size} MPI ranks but mpi4py is missing: pip install 'megacpt[mpi]'"
        ) from err
    return MPI.COMM_WORLD


def _together(comm: Any, action: Callable[[], Any], root_only: bool) -> Any:
    """Run ``action`` on rank 0 (``root_only``) or every rank, so that a failure on any rank
    raises on all of them instead of leaving the others waiting; rank 0's result is shared."""
    result, error = None, None
    if comm is None or not root_only or comm.Get_rank() == 0:
        try:
            result = action()
        except BaseException as err:
            if comm is None:
                raise
            error = err
    if comm is None:
        return result
    barrier = comm.Ibarrier()  # wait idle: MPI's blocking collectives spin a core while waiting
    while not barrier.Test():
        time.sleep(0.05)
    errors = comm.allgather(None if error is None else (type(error).__name__, str(error)))
    for rank, failure in enumerate(errors):
        if failure is not None:
            if error is not None:
                raise error
            kind, message = failure
            raise (UserError if kind == "UserError" else RuntimeError)(f"rank {rank}: {message}")
    return comm.bcast(result, root=0)


def _settings(cfg: PreprocessConfig, tok: TextTokenizer, paths: list[str]) -> dict[str, Any]:
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


def _load_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _plan(
    cfg: PreprocessConfig,
    settings: dict[str, Any],
    paths: list[str],
    work_dir: str,
    processes: int,
    whole_batches: bool,
    one_token_file: bool,
) -> tuple[list[readers.Shard], bool]:
    """The shard plan and whether its shards put their tokens into one file per key: the one
    recorded by an unfinished run with the same settings, or a new one (``one_token_file`` as given).
    With ``whole_batches`` (one process, no MPI, reads and encodes every shard, so shards serve only
    to resume a killed run), the automatic size is 64 MiB in whole batches: each shard's end costs an fsync,
    and a short batch a read-ahead wait."""
    plan_path = os.path.join(work_dir, "plan.json")
    recorded = _load_json(plan_path)
    if recorded is not None:
        if recorded["settings"] != settings:
            raise UserError(
                f"{work_dir} holds an unfinished run with other inputs or settings; "
                f"rerun with those, or delete {work_dir} to start over"
            )
        return [readers.Shard(**s) for s in recorded["shards"]], recorded.get("one_token_file", False)
    os.makedirs(work_dir, exist_ok=True)
    shard_bytes = cfg.shard_bytes
    total = sum(os.path.getsize(p) for p in paths)
    if shard_bytes is None and whole_batches:
        shard_bytes = -(-64 * MiB // cfg.batch_bytes) * cfg.batch_bytes
    elif shard_bytes is None:  # enough shards to keep every worker busy to the end
        shard_bytes = min(max(total // (8 * processes), MiB), 64 * MiB)
    shard_bytes = max(1, min(shard_bytes, -(-total // cfg.min_shards)))
    shards = readers.plan_shards(paths, shard_bytes)
    plan = {"settings": settings, "one_token_file": one_token_file, "shards": [asdict(s) for s in shards]}
    write_json_atomic(plan_path, plan)
    return shards, one_token_file


def _published(cfg: PreprocessConfig, stats: dict[str, Any]) -> bool:
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


def output_prefix(cfg: PreprocessConfig, key: str) -> str:
    """Where the dataset for ``key`` is written (Megatron-LM's ``<prefix>_<key>_document``)."""
    return f"{cfg.output_prefix}_{key}_document"


def _finish(
    cfg: PreprocessConfig,
    settings: dict[str, Any],
    shards: int,
    ranks: int,
    work_dir: str,
    stats_path: str,
    backend: str,
    one_token_file: bool,
) -> dict[str, Any]:
    """Merge the shard datasets in order, then write the stats file (the run's completion mark)."""
    total = ShardStats()
    for index in range(shards):
        done = shard_done(cfg, work_dir, index, one_token_file)
        if done is None:
            raise RuntimeError(f"shard {index} has no record in {work_dir}")
        total.add(done)
    if total.documents == 0:
        reasons = (
            ", ".join(f"{k}: {v:,}" for k, v in sorted(total.skipped.items()))
            or "the inputs hold no documents"
        )
        raise UserError(
            f"no document written: every line was skipped ({reasons}); check --input and --json-keys"
        )
    # Merged under temporary names, then published: the stats file (the completion mark) goes first and
    # comes back last, so a reader or a rerun never takes a half-published .bin/.idx pair for a dataset.
    staged = {key: merged_prefix(work_dir, key) for key in cfg.json_keys}
    for key in cfg.json_keys:
        merge(staged[key], [shard_prefix(work_dir, i, key) for i in range(shards)], one_token_file)
        doc_bytes.merge(staged[key], [shard_prefix(work_dir, i, key) for i in range(shards)])
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
        "shards": shards,
        "ranks": ranks,
        "backend": backend,
        "settings": settings,
    }
    if os.path.exists(stats_path):
        os.remove(stats_path)
    for key in cfg.json_keys:
        for suffix in (doc_bytes.SUFFIX, ".bin", ".idx"):
            os.replace(staged[key] + suffix, output_prefix(cfg, key) + suffix)
    write_json_atomic(stats_path, stats)
    return stats


def _after(tokens_at: dict[str, int], stats: ShardStats, tok: TextTokenizer) -> dict[str, int]:
    """Where the next shard's tokens go in each key's token file, after a shard of ``stats``."""
    itemsize = np.dtype(optimal_dtype(tok.vocab_size)).itemsize
    return {key: at + stats.tokens[key] * itemsize for key, at in tokens_at.items()}


def _resume_in_order(
    cfg: PreprocessConfig, plan: list[readers.Shard], work_dir: str, tok: TextTokenizer
) -> tuple[list[tuple[int, readers.Shard]], dict[str, int]]:
    """For a plan whose shards share one token file per key: the shards from the first one not
    recorded as done, or whose tokens that file no longer holds, onwards (a later record is dropped:
    its tokens would follow lost ones), and the byte offset in each token file where the first of
    them starts."""
    held = {}
    for key in cfg.json_keys:
        path = merged_prefix(work_dir, key) + ".bin"
        held[key] = os.path.getsize(path) if os.path.isfile(path) else 0
    tokens_at = dict.fromkeys(cfg.json_keys, 0)
    first = 0
    while first < len(plan) and (done := shard_done(cfg, work_dir, first, True)) is not None:
        ends = _after(tokens_at, done, tok)
        if any(ends[key] > held[key] for key in ends):
            break
        tokens_at = ends
        first += 1
    for index in range(first, len(plan)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(record_path(work_dir, index))
    return list(enumerate(plan))[first:], tokens_at


def run(cfg: PreprocessConfig) -> dict[str, Any]:
    """Tokenise ``cfg.inputs`` into one dataset per JSON key; return the stats (also written to
    ``<output_prefix>.stats.json``). Resumes an unfinished run; a finished one is not redone."""
    comm = _mpi_comm()
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    paths = readers.expand_inputs(cfg.inputs)
    if len(cfg.json_keys) > 1 and any(readers.kind_of(p) == "text" for p in paths):
        raise UserError("plain-text inputs hold one text per file: use a single --json-keys")
    os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.workers))  # gigatoken's pool, built on first use
    tok = _load(cfg, cfg.tokenizer_backend, _sample(paths, cfg.json_keys, cfg.max_document_bytes))
    if rank == 0 and cfg.progress:
        print(
            f"tokenizer: {cfg.tokenizer} ({tok.vocab_size:,} tokens, encoded by {tok.backend})",
            file=sys.stderr,
        )
    if cfg.append_eod and tok.eod_id is None:
        raise UserError(f"--append-eod: tokenizer {cfg.tokenizer} defines no end-of-sequence token")
    settings = _settings(cfg, tok, paths)
    work_dir = cfg.output_prefix + ".shards"
    stats_path = cfg.output_prefix + ".stats.json"
    finished = _load_json(stats_path)
    if cfg.overwrite:
        finished = None
        if rank == 0:
            shutil.rmtree(work_dir, ignore_errors=True)
    elif finished is not None and finished.get("settings") != settings:
        raise UserError(
            f"{stats_path} records a finished run with other inputs or settings; "
            "pass --overwrite to replace its datasets"
        )
    if finished is not None and _published(cfg, finished):
        if rank == 0 and not cfg.keep_shards:
            shutil.rmtree(work_dir, ignore_errors=True)
        return finished
    out_dir = Path(os.path.dirname(cfg.output_prefix) or ".")
    check_writable(out_dir)  # before any work is done
    out_dir.mkdir(parents=True, exist_ok=True)
    processes = size * (1 if threaded(tok) else cfg.workers)
    in_order = size == 1 and (threaded(tok) or cfg.workers == 1)
    plan, one_token_file = _together(
        comm,
        lambda: _plan(
            cfg,
            settings,
            paths,
            work_dir,
            processes,
            threaded(tok) and size == 1,
            in_order and not cfg.keep_shards,
        ),
        root_only=True,
    )
    if one_token_file and size > 1:
        raise UserError(
            f"{work_dir} holds an unfinished run planned for one process; rerun it without mpirun, "
            f"or delete {work_dir} to start over"
        )
    if one_token_file:
        tasks, tokens_at = _resume_in_order(cfg, plan, work_dir, tok)
    else:
        tasks = [
            (i, s)
            for i, s in enumerate(plan)
            if i % size == rank and shard_done(cfg, work_dir, i, False) is None
        ]
        tokens_at = None
    bar = ProgressBar(cfg.progress and rank == 0, len(tasks), cfg.log_interval)
    try:
        _together(comm, lambda: run_shards(cfg, tasks, work_dir, tok, bar, tokens_at), root_only=False)
    finally:
        bar.close()
    stats = _together(
        comm,
        lambda: _finish(cfg, settings, len(plan), size, work_dir, stats_path, tok.backend, one_token_file),
        root_only=True,
    )
    if rank == 0 and not cfg.keep_shards:
        shutil.rmtree(work_dir, ignore_errors=True)
    return stats
