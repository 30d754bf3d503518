"""What ``preprocess`` is asked to do: inputs, tokenizer, output, and how (validated on creation)."""

from __future__ import annotations

from dataclasses import dataclass

from megacpt.errors import UserError

MiB = 1 << 20


@dataclass(frozen=True)
class PreprocessConfig:
    """What to tokenise, with what, and where to write it."""

    inputs: tuple[str, ...]
    output_prefix: str
    tokenizer: str
    json_keys: tuple[str, ...] = ("text",)
    append_eod: bool = False
    workers: int = 1
    tokenizer_kind: str = "auto"  # see megacpt.tokenizer.encoders.KINDS
    tokenizer_backend: str = "auto"  # auto: gigatoken where it matches the reference, else the reference
    merge_file: str | None = None  # GPT-2 BPE: ``tokenizer`` is then the vocab.json
    tiktoken_encoding: str | None = None  # a .tiktoken file's encoding (its split pattern)
    shard_bytes: int | None = None  # None: about 8 shards per worker, between 1 and 64 MiB
    min_shards: int = 1  # plain JSONL is cut into at least this many shards (Megatron-LM's --partitions)
    log_interval: int | None = None  # also print a progress line every this many documents
    max_document_bytes: int = 32 * MiB
    batch_bytes: int = 16 * MiB  # read, checked and encoded in batches of about this much input
    keep_shards: bool = False
    progress: bool = True
    overwrite: bool = False  # start over, replacing the datasets of an earlier run with other settings

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "json_keys", tuple(self.json_keys))
        if self.workers < 1:
            raise UserError("workers must be at least 1")
        if self.min_shards < 1 or (self.log_interval is not None and self.log_interval < 1):
            raise UserError("min_shards and log_interval must be at least 1")
        if not self.json_keys or len(set(self.json_keys)) != len(self.json_keys):
            raise UserError("json_keys must name at least one key, each once")
        if min(self.batch_bytes, self.max_document_bytes) < 1:
            raise UserError("the batch size and the maximum document size must be positive")
        if self.shard_bytes is not None and self.shard_bytes < 1:
            raise UserError("the shard size must be positive")
        if self.tiktoken_encoding is not None and not self.tokenizer.endswith(".tiktoken"):
            raise UserError(f"tiktoken_encoding applies only to a .tiktoken file, not to {self.tokenizer}")
