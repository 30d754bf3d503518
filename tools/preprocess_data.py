"""Tokenise JSONL / Parquet / text into Megatron-core .bin/.idx datasets (Megatron-LM's flags).

    python tools/preprocess_data.py --input 'corpus/*.jsonl.zst' --output-prefix data/ko \
        --tokenizer tokenizer.model --append-eod --workers 16
    mpirun -n 4 python tools/preprocess_data.py ...   # ranks split the shards; rank 0 merges

Writes <output-prefix>_<key>_document.{bin,idx} and <output-prefix>.stats.json; rerun the same
command after an interruption to resume. The library is megacpt.data.preprocess.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from megacpt.data.preprocess import MiB, PreprocessConfig, launched_rank, run
from megacpt.errors import exits_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--input", nargs="+", required=True, help="input files or globs (JSONL[.gz|.zst], Parquet, text)"
    )
    p.add_argument("--output-prefix", required=True, help="prefix of the output datasets and stats file")
    p.add_argument(
        "--tokenizer",
        "--tokenizer-model",
        required=True,
        help="SentencePiece .model, HF tokenizer.json, or an HF tokenizer directory",
    )
    p.add_argument("--json-keys", nargs="+", default=["text"], help="JSON keys / Parquet columns to tokenise")
    p.add_argument("--append-eod", action="store_true", help="append the end-of-sequence id to each document")
    p.add_argument("--workers", type=int, default=1, help="tokeniser processes (per MPI rank)")
    p.add_argument(
        "--shard-mb",
        type=float,
        help="split plain JSONL into shards of this size (default: ~8 per worker, 1-64)",
    )
    p.add_argument(
        "--max-document-mb",
        type=float,
        default=32,
        help="a JSONL line, Parquet value or text file over this size is skipped and counted",
    )
    p.add_argument("--batch-size", type=int, default=256, help="documents per tokeniser call")
    p.add_argument("--keep-shards", action="store_true", help="keep <output-prefix>.shards/ after merging")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = PreprocessConfig(
        inputs=args.input,
        output_prefix=args.output_prefix,
        tokenizer=args.tokenizer,
        json_keys=args.json_keys,
        append_eod=args.append_eod,
        workers=args.workers,
        shard_bytes=None if args.shard_mb is None else int(args.shard_mb * MiB),
        max_document_bytes=int(args.max_document_mb * MiB),
        batch_documents=args.batch_size,
        keep_shards=args.keep_shards,
        progress=not args.no_progress,
    )
    start = time.monotonic()
    stats = run(cfg)
    seconds = time.monotonic() - start
    summary = {k: stats[k] for k in ("documents", "tokens", "bytes", "characters_per_token", "skipped")}
    summary["seconds"] = round(seconds, 2)
    summary["datasets"] = [v["dataset"] for v in stats["per_key"].values()]
    if launched_rank() == 0:
        print(json.dumps(summary, ensure_ascii=False), file=sys.stderr)


if __name__ == "__main__":
    main()
