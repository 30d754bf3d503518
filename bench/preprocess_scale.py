"""Preprocessing at scale: 1 GB and 10 GB of JSONL, plain and ``.jsonl.zst``, tokenised three ways.

For each size the bundled corpora are replicated into four files (two plain ``.jsonl``, two
``.jsonl.zst``) and ``tools/preprocess_data.py`` (Mistral's SentencePiece v1, ``--append-eod``)
runs:

1. in one process (gigatoken on ``--workers`` threads);
2. under ``mpirun -n 2`` (one thread per rank; rank 0 writes every shard in order);
3. in one process, killed (SIGKILL) once half of its shards are recorded, then rerun to the end.

The three datasets (``.bin``, ``.idx``, ``.doc_bytes.npy``) must be byte-identical: the script
compares their SHA-256 and fails otherwise. It prints a Markdown table of wall time, CPU time,
throughput and the process tree's peak summed RSS for each run (each output is hashed and deleted
before the next run, so the disk holds one at a time).

    PYTHONPATH=. python bench/preprocess_scale.py --sizes-gb 1,10 --tmp /tmp/ppscale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil
import zstandard

from bench.preprocess import CORPORA, REPO, model_path, timed_tree

TOOL = REPO / "tools" / "preprocess_data.py"
OUTPUTS = (".bin", ".idx", ".doc_bytes.npy")


def build_inputs(folder: Path, size_gb: float) -> list[Path]:
    """Four files of ``size_gb / 4`` GB of replicated corpus lines each, two of them zstd-compressed."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [ln for f in sorted(CORPORA.glob("*/*.jsonl")) for ln in f.read_bytes().splitlines(keepends=True)]
    block = b"".join(lines)
    each = int(size_gb * 1e9 / 4)
    paths = []
    for i in range(4):
        path = folder / (f"part-{i}.jsonl" + (".zst" if i % 2 else ""))
        paths.append(path)
        if path.exists():
            continue
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as raw:
            out = zstandard.ZstdCompressor(level=3, threads=2).stream_writer(raw) if i % 2 else raw
            written = 0
            while written < each:
                out.write(block)
                written += len(block)
            if i % 2:
                out.close()
        os.replace(partial, path)
    return paths


def digest(prefix: Path) -> dict[str, str]:
    sums = {}
    for ext in OUTPUTS:
        h = hashlib.sha256()
        with open(f"{prefix}{ext}", "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        sums[ext] = h.hexdigest()
    return sums


def remove_outputs(prefix: Path) -> None:
    for ext in (*OUTPUTS, ".stats.json"):
        Path(f"{prefix}{ext}").unlink(missing_ok=True)
    shutil.rmtree(f"{prefix}.shards", ignore_errors=True)


def killed_halfway(cmd: list[str], prefix: Path) -> tuple[float, int, int]:
    """Run ``cmd`` until half of its plan's shards are recorded, then SIGKILL it and its children;
    return the seconds it ran, the shards recorded and the plan's shards."""
    work = Path(f"{prefix}.shards")
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=REPO, start_new_session=True)
    total = None
    while proc.poll() is None:
        if total is None and (work / "plan.json").exists():
            total = len(json.loads((work / "plan.json").read_text())["shards"])
        done = len(list(work.glob("shard-*.json"))) if work.exists() else 0
        if total is not None and done >= total // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return time.perf_counter() - start, done, total
        time.sleep(0.05)
    raise SystemExit("the run ended before half of its shards were recorded: nothing was killed")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes-gb", default="1,10", help="comma-separated input sizes in GB")
    p.add_argument("--tmp", type=Path, default=Path("/tmp/ppscale"))
    p.add_argument("--workers", type=int, default=2, help="threads of the one-process runs")
    p.add_argument("--keep-inputs", action="store_true")
    args = p.parse_args()
    rows = []
    for size in [float(s) for s in args.sizes_gb.split(",")]:
        folder = args.tmp / f"{size:g}gb"
        started = time.perf_counter()
        inputs = build_inputs(folder, size)
        print(
            f"{size:g} GB: inputs ready in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True
        )
        common = ["--no-progress", "--input", *map(str, inputs), "--tokenizer", model_path(), "--append-eod"]
        one_process = [sys.executable, str(TOOL), *common, "--workers", str(args.workers)]
        mpi = [
            "mpirun",
            "--allow-run-as-root",
            "-n",
            "2",
            sys.executable,
            str(TOOL),
            *common,
            "--workers",
            "1",
        ]
        digests = {}
        for way, cmd in (
            ("one process", one_process),
            ("mpirun -n 2", mpi),
            ("killed and resumed", one_process),
        ):
            prefix = folder / "out"
            remove_outputs(prefix)
            full = [*cmd, "--output-prefix", str(prefix)]
            note = ""
            if way == "killed and resumed":
                killed_s, done, total = killed_halfway(full, prefix)
                seconds, cpu, peak = timed_tree(full)
                note = f"killed after {killed_s:.0f} s with {done}/{total} shards recorded; resumed in {seconds:.0f} s"
                seconds += killed_s
            else:
                seconds, cpu, peak = timed_tree(full)
            stats = json.loads(Path(f"{prefix}.stats.json").read_text())
            digests[way] = digest(Path(f"{prefix}_text_document"))
            rows.append((size, way, seconds, cpu, peak, stats, note))
            print(
                f"{size:g} GB, {way}: {seconds:.0f} s, peak {peak:.0f} MiB {note}",
                file=sys.stderr,
                flush=True,
            )
            remove_outputs(Path(f"{prefix}_text_document"))
            remove_outputs(prefix)
        if len({json.dumps(d, sort_keys=True) for d in digests.values()}) != 1:
            raise SystemExit(f"{size:g} GB: the outputs differ: {json.dumps(digests, indent=1)}")
        print(f"{size:g} GB: the three outputs are byte-identical: {digests['one process']}", file=sys.stderr)
        if not args.keep_inputs:
            shutil.rmtree(folder)
    print("| input | way | wall s | CPU s | MB/s | M tokens/s | peak RSS MiB | |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for size, way, seconds, cpu, peak, stats, note in rows:
        print(
            f"| {size:g} GB ({stats['documents']:,} docs, {stats['tokens'] / 1e9:.2f} B tokens) | {way} | "
            f"{seconds:.0f} | {cpu:.0f} | {stats['bytes'] / seconds / 1e6:.1f} | "
            f"{stats['tokens'] / seconds / 1e6:.2f} | {peak:.0f} | {note} |"
        )


if __name__ == "__main__":
    main()
