"""Cleaning throughput: the full pipeline with N worker processes against the same pipeline on one.

Input: the bundled Korean, Japanese and English corpora concatenated and replicated ``--copies``
times (replicas are exact duplicates, so most are removed by dedup after the full per-document
work, which is what is timed). Prints documents/s and MB/s per worker count, and the ratio to the
one-worker baseline measured in the same run.

    python bench/clean_corpus.py --copies 4 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from megacpt.clean.pipeline import CleanConfig, clean_corpus

CORPORA = Path(__file__).resolve().parents[1] / "examples" / "corpora"


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
            start = time.perf_counter()
            report = clean_corpus(
                str(src), os.path.join(tmp, f"out{workers}.jsonl"), config=config, workers=workers
            )
            seconds = time.perf_counter() - start
            baseline = baseline or seconds
            print(
                f"workers={workers}: {report.documents_in} docs ({size_mb:.1f} MB) in {seconds:.2f} s = "
                f"{report.documents_in / seconds:,.0f} docs/s, {size_mb / seconds:.2f} MB/s, "
                f"speed-up vs 1 worker x{baseline / seconds:.2f}, kept {report.documents_out}"
            )


if __name__ == "__main__":
    main()
