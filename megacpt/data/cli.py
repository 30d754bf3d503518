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
from dataclasses import MISSING, dataclass

from megacpt.data.preprocess import MiB, PreprocessConfig, launched_rank, run
from megacpt.errors import UserError, exits_on_user_error
from megacpt.options import COUNT, POSITIVE, flag, overwrite_flag, parse, workers_flag
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


@dataclass(frozen=True, kw_only=True)
class PreprocessOptions:
    """``megacpt preprocess``'s options (Megatron-LM's ``tools/preprocess_data.py`` names)."""

    input: tuple[str, ...]
    """input files or globs (JSONL[.gz|.zst], Parquet, text)"""
    output_prefix: str
    """prefix of the output datasets and stats file"""
    tokenizer: str = flag(MISSING, "--tokenizer", "--tokenizer-model", "--vocab-file")
    """SentencePiece .model, HF tokenizer.json or directory, tekken*.json, .tiktoken, or (with
    --merge-file) a GPT-2 vocab.json"""
    tokenizer_type: str | None = flag(None, default_text="detected")
    """Megatron-LM's name of the tokenizer format (SentencePieceTokenizer, HuggingFaceTokenizer,
    GPT2BPETokenizer, TikTokenizer, ...)"""
    merge_file: str | None = None
    """GPT-2 BPE merges.txt (with --vocab-file)"""
    tiktoken_pattern: str | None = flag(None, choices=TIKTOKEN_ENCODINGS)
    """a .tiktoken file's encoding"""
    tokenizer_backend: str = flag("auto", choices=BACKENDS)
    """auto: gigatoken when it gives the reference's ids on a sample of the input"""
    json_keys: tuple[str, ...] = flag(PreprocessConfig.json_keys, metavar="KEY")
    """JSON fields / Parquet columns to read, one dataset each"""
    append_eod: bool = False
    """append the end-of-sequence id to each document"""
    workers: int = workers_flag(
        PreprocessConfig.workers, "cores per MPI rank: gigatoken's threads, else tokeniser processes"
    )
    partitions: int = flag(PreprocessConfig.min_shards, type=COUNT)
    """cut the input into at least this many shards (order is kept)"""
    log_interval: int | None = flag(None, type=COUNT)
    """print a progress line every N documents"""
    keep_sequential_samples: bool = False
    """accepted for Megatron-LM compatibility: documents always keep their input order"""
    split_sentences: bool = flag(False, help=argparse.SUPPRESS)
    keep_newlines: bool = flag(False, help=argparse.SUPPRESS)
    shard_mb: float | None = flag(None, type=POSITIVE, default_text="~8 per worker, 1-64")
    """split plain JSONL into shards of this size"""
    max_document_mb: float = flag(PreprocessConfig.max_document_bytes / MiB, type=POSITIVE)
    """a JSONL line, Parquet value or text file over this size is skipped and counted"""
    batch_mb: float = flag(PreprocessConfig.batch_bytes / MiB, type=POSITIVE)
    """input is read, checked and encoded in batches of about this many MB"""
    keep_shards: bool = False
    """keep <output-prefix>.shards/ after merging"""
    overwrite: bool = overwrite_flag()
    no_progress: bool = False
    """no progress bar"""

    def __post_init__(self) -> None:
        if self.split_sentences or self.keep_newlines:
            raise UserError(
                "--split-sentences/--keep-newlines are not supported: megacpt writes one sequence per "
                "document; split documents into sentences beforehand (tools/clean_corpus.py writes the JSONL)"
            )
        if len(set(self.json_keys)) != len(self.json_keys):
            raise UserError(f"--json-keys names a key twice: {' '.join(self.json_keys)}")
        if self.tiktoken_pattern is not None and not self.tokenizer.endswith(".tiktoken"):
            raise UserError(f"--tiktoken-pattern applies only to a .tiktoken file, not to {self.tokenizer}")

    def config(self) -> PreprocessConfig:
        return PreprocessConfig(
            inputs=self.input,
            output_prefix=self.output_prefix,
            tokenizer=self.tokenizer,
            json_keys=self.json_keys,
            append_eod=self.append_eod,
            workers=self.workers,
            tokenizer_kind=tokenizer_kind(self.tokenizer_type, self.merge_file),
            tokenizer_backend=self.tokenizer_backend,
            merge_file=self.merge_file,
            tiktoken_encoding=self.tiktoken_pattern,
            min_shards=self.partitions,
            log_interval=self.log_interval,
            shard_bytes=None if self.shard_mb is None else int(self.shard_mb * MiB),
            max_document_bytes=int(self.max_document_mb * MiB),
            batch_bytes=int(self.batch_mb * MiB),
            keep_shards=self.keep_shards,
            overwrite=self.overwrite,
            progress=not self.no_progress,
        )


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
    cfg = parse(PreprocessOptions, argv, __doc__.split("\n")[0]).config()
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


@dataclass(frozen=True, kw_only=True)
class MixOptions:
    """``megacpt mix``'s options."""

    spec: str = flag(positional=True)
    """data-mixture YAML file"""
    tokens: str
    """training-token budget, e.g. 2000000, 2e9, 500M, 100B"""
    split: str | None = None
    """train,valid,test split, e.g. 98,2,0: count only train documents"""


@exits_on_user_error
def mix_main(argv: list[str] | None = None) -> None:
    options = parse(MixOptions, argv, MIX_DOC)
    from megacpt.data.mixture.budget import format_budget_table, parse_token_count, token_budget_table
    from megacpt.data.mixture.spec import DataMixture

    mixture = DataMixture.from_yaml(options.spec)
    rows = token_budget_table(mixture, parse_token_count(options.tokens), split=options.split)
    print(format_budget_table(rows))
