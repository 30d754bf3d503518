"""Tokenise a text corpus into Megatron-core indexed datasets, in parallel, resumably, across MPI ranks.

The inputs are cut into shards (``plan``). Each process encodes its shards in order (``execute``:
gigatoken's threads here, or a pool of worker processes for the tokenizers that hold the GIL;
``mpi``: every rank its share) and streams the batches to one sink in rank 0's main process
(``sink``), which writes the shards in plan order straight into the merged token file of each key
and records each shard as done. When every shard is done, their indices are merged and the
datasets published as ``<output_prefix>_<key>_document.{bin,idx}`` (Megatron-LM's naming) with the
totals in ``<output_prefix>.stats.json`` (``publish``). A rerun resumes at the first shard not
recorded, in any number of processes or ranks, so a run killed at any point and rerun yields the
bytes of one that never was. Tokenizers come from ``megacpt.tokenizer.encoders``; ``append_eod``
appends the tokenizer's end-of-sequence id after each document.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from megacpt.atomic import check_writable
from megacpt.data import readers
from megacpt.data.config import MiB, PreprocessConfig
from megacpt.data.preprocess import mpi
from megacpt.data.preprocess.encode import sample
from megacpt.data.preprocess.execute import load, local_stream, on_thread, threaded
from megacpt.data.preprocess.mpi import launched_rank
from megacpt.data.preprocess.plan import (
    Task,
    load_json,
    load_or_make,
    output_prefix,
    published,
    settings_of,
    to_do,
    work_dir_of,
)
from megacpt.data.preprocess.progress import ProgressBar
from megacpt.data.preprocess.publish import publish
from megacpt.data.preprocess.sink import Sink
from megacpt.errors import UserError
from megacpt.fingerprint import describe_files
from megacpt.tokenizer.encoders import TextTokenizer

__all__ = ["MiB", "PreprocessConfig", "launched_rank", "output_prefix", "run"]


def _encode_and_write(
    cfg: PreprocessConfig, comm: Any, tasks: list[Task], tok: TextTokenizer, sink: Sink | None
) -> None:
    """This process's share of ``tasks`` encoded; on rank 0, every task written by ``sink``."""
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    stream = local_stream(cfg, tasks[rank::size], tok, flat=size > 1)
    if sink is None:
        mpi.send_stream(comm, stream)
        return
    local = on_thread(stream)
    if comm is None:
        try:
            sink.write(tasks, lambda _: local)
        finally:
            local.close()
    else:
        mpi.root_write(comm, sink, tasks, local)


def _open_inputs(cfg: PreprocessConfig) -> tuple[list[str], TextTokenizer]:
    """The input files and the tokenizer, checked against a sample of the text."""
    paths = readers.expand_inputs(cfg.inputs)
    if len(cfg.json_keys) > 1 and any(readers.kind_of(p) == "text" for p in paths):
        raise UserError("plain-text inputs hold one text per file: use a single --json-keys")
    os.environ.setdefault("RAYON_NUM_THREADS", str(cfg.workers))  # gigatoken's pool, built on first use
    return paths, load(cfg, cfg.tokenizer_backend, sample(paths, cfg.json_keys, cfg.max_document_bytes))


def _description(cfg: PreprocessConfig, settings: dict[str, Any]) -> dict[str, str]:
    """What the ranks must agree on: the settings, each input by size (copies on other nodes keep
    other times), and the tokenizer's files by content."""
    described = {f"setting {key}": repr(value) for key, value in settings.items() if key != "inputs"}
    described |= {f"input {path}": f"size {size:,}" for path, size, _ in settings["inputs"]}
    tokenizer = Path(cfg.tokenizer)
    files = sorted(p for p in tokenizer.iterdir() if p.is_file()) if tokenizer.is_dir() else [tokenizer]
    files += [Path(cfg.merge_file)] if cfg.merge_file else []
    return described | {f"tokenizer file {k}": v for k, v in describe_files(files).items()}


def run(cfg: PreprocessConfig) -> dict[str, Any]:
    """Tokenise ``cfg.inputs`` into one dataset per JSON key; return the stats (also written to
    ``<output_prefix>.stats.json``). Resumes an unfinished run; a finished one is not redone."""
    comm = mpi.world()
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    paths, tok = mpi.each(comm, lambda: _open_inputs(cfg))
    if rank == 0 and cfg.progress:
        print(
            f"tokenizer: {cfg.tokenizer} ({tok.vocab_size:,} tokens, encoded by {tok.backend})",
            file=sys.stderr,
        )
    if cfg.append_eod and tok.eod_id is None:
        raise UserError(f"--append-eod: tokenizer {cfg.tokenizer} defines no end-of-sequence token")
    settings = settings_of(cfg, tok, paths)
    mpi.agree(comm, _description(cfg, settings))
    work_dir = work_dir_of(cfg)
    stats_path = cfg.output_prefix + ".stats.json"
    finished = load_json(stats_path)
    if cfg.overwrite:
        finished = None
        if rank == 0:
            shutil.rmtree(work_dir, ignore_errors=True)
    elif finished is not None and finished.get("settings") != settings:
        raise UserError(
            f"{stats_path} records a finished run with other inputs or settings; "
            "pass --overwrite to replace its datasets"
        )
    if finished is not None and published(cfg, finished):
        if rank == 0 and not cfg.keep_shards:
            shutil.rmtree(work_dir, ignore_errors=True)
        return finished
    out_dir = Path(os.path.dirname(cfg.output_prefix) or ".")
    check_writable(out_dir)  # before any work is done
    out_dir.mkdir(parents=True, exist_ok=True)
    processes = size * (1 if threaded(tok) else cfg.workers)
    whole_batches = threaded(tok) and size == 1
    plan = mpi.together(
        comm, lambda: load_or_make(cfg, settings, paths, processes, whole_batches), root_only=True
    )
    tasks, tokens_at = mpi.together(comm, lambda: to_do(cfg, plan, tok.vocab_size), root_only=True)
    bar = ProgressBar(cfg.progress and rank == 0, len(tasks), cfg.log_interval)
    sink = Sink(cfg, tok, tokens_at, bar) if rank == 0 else None
    try:
        mpi.together(comm, lambda: _encode_and_write(cfg, comm, tasks, tok, sink), root_only=False)
    finally:
        bar.close()
    stats = mpi.together(comm, lambda: publish(cfg, plan, settings, size, tok.backend), root_only=True)
    if rank == 0 and not cfg.keep_shards:
        shutil.rmtree(work_dir, ignore_errors=True)
    return stats
