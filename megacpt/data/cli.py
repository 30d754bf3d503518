"""Tokenise JSONL / Parquet / text into Megatron-core .bin/.idx datasets (Megatron-LM's flags).

    python tools/preprocess_data.py --input 'corpus/*.jsonl.zst' --output-prefix data/ko \
        --tokenizer tokenizer.model --append-eod --workers 16
    python tools/preprocess_data.py --input ko.jsonl --output-prefix data/ko --tokenizer-type \
        SentencePieceTokenizer --tokenizer-model tokenizer.model --append-eod --workers 8 --log-interval 100
    mpirun -n 4 python tools/preprocess_data.py ...   # ranks split the shards; rank 0 writes them in order

Writes <output-prefix>_<key>_document.{bin,idx,doc_bytes.npy} and <output-prefix>.stats.json; rerun
the same command after an interruption to resume. Special-token strings inside documents are
encoded as text. The library is megacpt.data.preprocess.

``megacpt mix`` (``mix_main``, ``tools/data_mixture.py``) prints a mixture's token budget per dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from megacpt.data.preprocess import MiB, PreprocessConfig, launched_rank, run
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import COUNT, POSITIVE, ArgumentParser, add_json_keys, add_overwrite, add_workers
from megacpt.tokenizer.encoders import BACKENDS, TIKTOKEN_ENCODINGS

# Megatron-LM's --tokenizer-type values that name a file format, and that format.
TOKENIZER_TYPES = {
    "SentencePieceTokenizer": "sentencepiece",
    "GPTSentencePieceTokenizer": "sentencepiece",
    "Llama2Tokenizer": "sentencepiece",
    "HuggingFaceTokenizer": "huggingface",
    "GPT2BPETokenizer": "gpt2",
    "TikTokenizer": "tekken",
}


def _preprocess_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--input", nargs="+", required=True, help="input files or globs (JSONL[.gz|.zst], Parquet, text)"
    )
    p.add_argument("--output-prefix", required=True, help="prefix of the output datasets and stats file")
    p.add_argument(
        "--tokenizer",
        "--tokenizer-model",
        "--vocab-file",
        dest="tokenizer",
        required=True,
        help="SentencePiece .model, HF tokenizer.json or directory, tekken*.json, .tiktoken, or (with "
        "--merge-file) a GPT-2 vocab.json",
    )
    p.add_argument(
        "--tokenizer-type",
        default=None,
        help=f"Megatron-LM's name of the tokenizer format ({', '.join(TOKENIZER_TYPES)}); default: detected",
    )
    p.add_argument("--merge-file", default=None, help="GPT-2 BPE merges.txt (with --vocab-file)")
    p.add_argument(
        "--tiktoken-pattern", choices=TIKTOKEN_ENCODINGS, default=None, help="a .tiktoken file's encoding"
    )
    p.add_argument(
        "--tokenizer-backend",
        choices=BACKENDS,
        default="auto",
        help="auto: gigatoken when it gives the reference's ids on a sample of the input",
    )
    add_json_keys(p, ["text"])
    p.add_argument("--append-eod", action="store_true", help="append the end-of-sequence id to each document")
    add_workers(
        p, PreprocessConfig.workers, "cores per MPI rank: gigatoken's threads, else tokeniser processes"
    )
    p.add_argument(
        "--partitions",
        type=COUNT,
        default=1,
        help="cut the input into at least this many shards (order is kept)",
    )
    p.add_argument("--log-interval", type=COUNT, default=None, help="print a progress line every N documents")
    p.add_argument(
        "--keep-sequential-samples",
        action="store_true",
        help="accepted for Megatron-LM compatibility: documents always keep their input order",
    )
    p.add_argument("--split-sentences", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--keep-newlines", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--shard-mb",
        type=POSITIVE,
        help="split plain JSONL into shards of this size (default: ~8 per worker, 1-64)",
    )
    p.add_argument(
        "--max-document-mb",
        type=POSITIVE,
        default=PreprocessConfig.max_document_bytes / MiB,
        help="a JSONL line, Parquet value or text file over this size is skipped and counted",
    )
    p.add_argument(
        "--batch-mb",
        type=POSITIVE,
        default=PreprocessConfig.batch_bytes / MiB,
        help="input is read, checked and encoded in batches of about this many MB",
    )
    p.add_argument("--keep-shards", action="store_true", help="keep <output-prefix>.shards/ after merging")
    add_overwrite(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def tokenizer_kind(name: str | None, merge_file: str | None) -> str:
    """megacpt's tokenizer kind for a Megatron-LM ``--tokenizer-type`` (one that names a file format)."""
    if name is None:
        return "gpt2" if merge_file else "auto"
    if name not in TOKENIZER_TYPES:
        raise UserError(
            f"--tokenizer-type {name} names no tokenizer file format megacpt reads; "
            f"use one of {', '.join(TOKENIZER_TYPES)} (or leave it out to detect the format)"
        )
    return TOKENIZER_TYPES[name]


@exits_on_user_error
def preprocess_main(argv: list[str] | None = None) -> None:
    args = _preprocess_args(argv)
    if args.split_sentences or args.keep_newlines:
        raise UserError(
            "--split-sentences/--keep-newlines are not supported: megacpt writes one sequence per document; "
            "split documents into sentences beforehand (tools/clean_corpus.py writes the JSONL)"
        )
    cfg = PreprocessConfig(
        inputs=args.input,
        output_prefix=args.output_prefix,
        tokenizer=args.tokenizer,
        json_keys=args.json_keys,
        append_eod=args.append_eod,
        workers=args.workers,
        tokenizer_kind=tokenizer_kind(args.tokenizer_type, args.merge_file),
        tokenizer_backend=args.tokenizer_backend,
        merge_file=args.merge_file,
        tiktoken_encoding=args.tiktoken_pattern,
        min_shards=args.partitions,
        log_interval=args.log_interval,
        shard_bytes=None if args.shard_mb is None else int(args.shard_mb * MiB),
        max_document_bytes=int(args.max_document_mb * MiB),
        batch_bytes=int(args.batch_mb * MiB),
        keep_shards=args.keep_shards,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    start = time.monotonic()
    stats = run(cfg)
    seconds = time.monotonic() - start
    summary = {
        k: stats[k] for k in ("documents", "tokens", "bytes", "characters_per_token", "skipped", "backend")
    }
    summary["seconds"] = round(seconds, 2)
    summary["datasets"] = [v["dataset"] for v in stats["per_key"].values()]
    if launched_rank() == 0:
        print(json.dumps(summary, ensure_ascii=False), file=sys.stderr)


MIX_DOC = """Print each dataset's share of a training-token budget, and how many epochs of it that means.

    python tools/data_mixture.py examples/data_mixture.yaml --tokens 2B --split 98,2,0

Weights in the spec are sampling shares, not sizes: a share larger than a dataset means repeats.
"""


@exits_on_user_error
def mix_main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=MIX_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="data-mixture YAML file")
    parser.add_argument(
        "--tokens", required=True, help="training-token budget, e.g. 2000000, 2e9, 500M, 100B"
    )
    parser.add_argument(
        "--split", default=None, help="train,valid,test split, e.g. 98,2,0: count only train documents"
    )
    args = parser.parse_args(argv)
    from megacpt.data.mixture import DataMixture, format_budget_table, parse_token_count, token_budget_table

    mixture = DataMixture.from_yaml(args.spec)
    rows = token_budget_table(mixture, parse_token_count(args.tokens), split=args.split)
    print(format_budget_table(rows))
