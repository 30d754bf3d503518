"""Cleaning throughput: the full pipeline with N worker processes against the same pipeline on one.

Input: the bundled Korean, Japanese and English corpora concatenated and replicated ``--copies``
times (replicas are exact duplicates, so most are removed by dedup after the full per-document
work, which is what is timed). Prints documents/s and MB/s per worker count, and the ratio to the
one-worker baseline measured in the same run, and the CPU seconds spent (a figure that a busy
machine disturbs less than wall time). For N > 1 workers it also prints a control: the speed-up a
pool of N gets on a pure-Python loop at that moment, the most any pipeline could get.

    python bench/clean_corpus.py --copies 4 --workers 1 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

from megacpt.clean.config import CleanConfig
from megacpt.clean.pipeline import clean_corpus

CORPORA = Path(__file__).resolve().parents[1] / "examples" / "corpora"


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the worker pool)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _spin(_: int) -> int:
    total = 0
    for i in range(3_000_000):
        total += i
    return total


def _control_speedup(workers: int) -> float:
    """Speed-up of a pool of ``workers`` on a pure-Python loop: what the machine can give right
    now. Near 1.0 means no spare core (a busy machine), and no pipeline could scale either."""
    tasks = range(2 * workers)
    start = time.perf_counter()
    for t in tasks:
        _spin(t)
    serial = time.perf_counter() - start
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_spin, tasks)
    return serial / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        with open(src, "wb") as out:
            for _ in range(args.copies):
                for path in sorted(CORPORA.glob("*/*.jsonl")):
                    out.write(path.read_bytes())
        size_mb = src.stat().st_size / 1e6
        config = CleanConfig(languages=("ko", "ja", "en"))
        baseline = None
        for workers in [1, *[w for w in args.workers if w != 1]]:
            cpu0 = _cpu_seconds()
            start = time.perf_counter()
            report = clean_corpus(
                str(src), os.path.join(tmp, f"out{workers}.jsonl"), config=config, workers=workers
            )
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu0
            baseline = baseline or seconds
            control = f", control x{_control_speedup(workers):.2f}" if workers > 1 else ""
            print(
                f"workers={workers}: {report.documents_in} docs ({size_mb:.1f} MB) in {seconds:.2f} s = "
                f"{report.documents_in / seconds:,.0f} docs/s, {size_mb / seconds:.2f} MB/s, "
                f"speed-up vs 1 worker x{baseline / seconds:.2f}, CPU {cpu:.1f} s ({size_mb / cpu:.2f} MB per CPU-s), "
                f"kept {report.documents_out}{control}"
            )


if __name__ == "__main__":
    main()
