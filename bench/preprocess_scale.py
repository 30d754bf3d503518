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

``--against-raw R`` instead times the one-process run against gigatoken's raw ``encode_files`` on
the same plain JSONL (four plain files), alternating R times each:

    PYTHONPATH=. python bench/preprocess_scale.py --sizes-gb 10 --against-raw 3 [--mutated]

Exact replicas flatter gigatoken's raw encoder, whose caches see each line thousands of times;
``--mutated`` makes every copy new Korean and Japanese text (``replica``).
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

from bench.preprocess import CORPORA, REPO, gigatoken_raw, model_path, timed_tree

TOOL = REPO / "tools" / "preprocess_data.py"
OUTPUTS = (".bin", ".idx", ".doc_bytes.npy")


def replica(text: str, k: int) -> str:
    """The ``k``-th copy of ``text`` with its Hangul syllables, CJK ideographs and kana shifted by a
    ``k``-dependent offset within their blocks (0: unchanged): every copy reads as new Korean and
    Japanese to a tokenizer's caches, with the scripts' byte lengths kept; ASCII (JSON keys,
    English) is left as it is."""
    if k == 0:
        return text
    blocks = ((0xAC00, 11172, 7919 * k), (0x4E00, 20992, 7919 * k), (0x3041, 86, k), (0x30A1, 86, k))
    table = {}
    for char in {c for c in text if ord(c) >= 0x3041}:
        code = ord(char)
        for start, size, shift in blocks:
            if start <= code < start + size:
                table[code] = start + (code - start + shift) % size
    return text.translate(table)


def build_inputs(folder: Path, size_gb: float, compressed: bool = True, mutated: bool = False) -> list[Path]:
    """Four files of ``size_gb / 4`` GB of replicated corpus lines each, two of them zstd-compressed
    (none without ``compressed``); with ``mutated``, each copy of the corpus is a ``replica``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [ln for f in sorted(CORPORA.glob("*/*.jsonl")) for ln in f.read_bytes().splitlines(keepends=True)]
    text = b"".join(lines).decode()
    each = int(size_gb * 1e9 / 4)
    paths, copies = [], 0
    for i in range(4):
        packed = compressed and i % 2 == 1
        path = folder / (f"part-{i}.jsonl" + (".zst" if packed else ""))
        paths.append(path)
        if path.exists():
            continue
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as raw:
            out = zstandard.ZstdCompressor(level=3, threads=2).stream_writer(raw) if packed else raw
            written = 0
            while written < each:
                block = replica(text, copies).encode() if mutated else text.encode()
                copies += 1
                out.write(block)
                written += len(block)
            if packed:
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


def against_raw(folder: Path, size_gb: float, repeats: int, workers: int, mutated: bool) -> None:
    """Ours in one process against gigatoken's raw ``encode_files`` (reading, JSON and encoding in
    Rust, tokens kept in memory, nothing written) on the same plain JSONL, alternating ``repeats``
    times each; prints every run and the ratio of the medians. Raw runs one process per file, one
    after the other (times summed, peak memory the largest)."""
    inputs = build_inputs(folder, size_gb, compressed=False, mutated=mutated)
    prefix = folder / "out"
    ours = [sys.executable, str(TOOL), "--no-progress", "--input", *map(str, inputs), "--tokenizer"]
    ours += [model_path(), "--append-eod", "--workers", str(workers), "--output-prefix", str(prefix)]
    runs: dict[str, list[tuple[float, float, float]]] = {"ours": [], "gigatoken raw": []}
    for _ in range(repeats):
        remove_outputs(Path(f"{prefix}_text_document"))
        remove_outputs(prefix)
        runs["ours"].append(timed_tree(ours))
        # one process per file: over all of them at once, encode_files holds every token in memory
        # (killed for memory at 10 GB on a 24 GiB machine)
        per_file = [timed_tree(gigatoken_raw(path)) for path in inputs]
        runs["gigatoken raw"].append(
            (sum(r[0] for r in per_file), sum(r[1] for r in per_file), max(r[2] for r in per_file))
        )
        print(
            f"{size_gb:g} GB plain: ours {runs['ours'][-1]}, raw {runs['gigatoken raw'][-1]}", file=sys.stderr
        )
    remove_outputs(Path(f"{prefix}_text_document"))
    remove_outputs(prefix)
    medians = {name: sorted(r)[len(r) // 2] for name, r in runs.items()}
    print(
        f"| {size_gb:g} GB plain JSONL, {'mutated' if mutated else 'exact'} replicas | wall s (each run) "
        "| CPU s (each run) | peak RSS MiB (median run) |"
    )
    print("| --- | --- | --- | ---: |")
    for name, r in runs.items():
        walls = ", ".join(f"{w:.0f}" for w, _, _ in r)
        cpus = ", ".join(f"{c:.0f}" for _, c, _ in r)
        print(f"| {name} | {walls} | {cpus} | {medians[name][2]:.0f} |")
    ratio = medians["ours"][0] / medians["gigatoken raw"][0]
    print(f"ours / gigatoken raw, median wall: x{ratio:.3f} (goal <= 1.0)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes-gb", default="1,10", help="comma-separated input sizes in GB")
    p.add_argument("--tmp", type=Path, default=Path("/tmp/ppscale"))
    p.add_argument("--workers", type=int, default=2, help="threads of the one-process runs")
    p.add_argument("--keep-inputs", action="store_true")
    p.add_argument(
        "--against-raw",
        type=int,
        default=0,
        metavar="REPEATS",
        help="instead: ours against gigatoken's raw encode_files on plain JSONL, REPEATS times each",
    )
    p.add_argument(
        "--mutated",
        action="store_true",
        help="with --against-raw: every copy of the corpus shifts its Korean and Japanese characters "
        "(bench.preprocess_scale.replica), so that no copy repeats another",
    )
    args = p.parse_args()
    if args.against_raw:
        for size in [float(s) for s in args.sizes_gb.split(",")]:
            folder = args.tmp / f"{size:g}gb-plain{'-mutated' if args.mutated else ''}"
            against_raw(folder, size, args.against_raw, args.workers, args.mutated)
            if not args.keep_inputs:
                shutil.rmtree(folder)
        return
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
