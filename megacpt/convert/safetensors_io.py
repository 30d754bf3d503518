"""Read and write Hugging Face safetensors checkpoints one tensor at a time.

Uses the ``safetensors`` library (the format's reference implementation): ``safe_open`` maps a
shard and returns a single tensor on request, so a reader never holds more than the tensor asked
for. The writer buffers tensors up to ``max_shard_bytes``, then writes a shard; the index
(``model.safetensors.index.json``) lists every tensor's shard, as ``from_pretrained`` expects.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from megacpt.errors import UserError
from megacpt.inputs import read_json

INDEX = "model.safetensors.index.json"
# safetensors' dtype names for the weights a converter accepts (quantised ones need their scales).
FLOAT_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
SINGLE = "model.safetensors"
# Small files copied along with a model: its tokenizer and generation defaults.
SIDE_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
)


def _check_shard(path: Path) -> list[str]:
    """The tensor names of one safetensors file, after checking that it exists and holds every byte
    its header promises (a truncated download is an error here, not a traceback mid-conversion)."""
    if not path.is_file():
        raise UserError(f"{path} is missing (named by {INDEX})")
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len > 100 * 1024**2:  # the format's own limit
                raise ValueError(header_len)
            header = json.loads(handle.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, MemoryError, OverflowError):
        raise UserError(f"{path}: not a readable safetensors file (damaged header)") from None
    if path.stat().st_size < 8 + header_len + end:
        raise UserError(
            f"{path} is truncated: {path.stat().st_size:,} bytes, its header needs {8 + header_len + end:,}"
        )
    return [k for k in header if k != "__metadata__"]


class HFReader:
    """The tensors of a Hugging Face checkpoint directory (single file or sharded with an index)."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        if not (self.dir / "config.json").is_file():
            raise UserError(f"{self.dir} is not a Hugging Face model directory (no config.json)")
        if (self.dir / INDEX).is_file():
            weight_map = read_json(self.dir / INDEX)["weight_map"]
        elif (self.dir / SINGLE).is_file():
            weight_map = dict.fromkeys(_check_shard(self.dir / SINGLE), SINGLE)
        else:
            raise UserError(f"{self.dir} has no safetensors weights ({SINGLE} or {INDEX})")
        for shard in sorted(set(weight_map.values()) - {SINGLE}):
            _check_shard(self.dir / shard)
        self.weight_map: dict[str, str] = weight_map
        self.config: dict[str, Any] = read_json(self.dir / "config.json")

    def __contains__(self, name: str) -> bool:
        return name in self.weight_map

    def _shard(self, name: str) -> Path:
        if name not in self.weight_map:
            raise UserError(f"{self.dir}: tensor {name} is missing")
        return self.dir / self.weight_map[name]

    def get(self, name: str) -> torch.Tensor:
        """One tensor: a zero-copy view of its memory-mapped shard, unmapped when the tensor is freed."""
        with safe_open(self._shard(name), framework="pt") as f:
            return f.get_tensor(name)

    def header(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        """Shape and dtype of one tensor, from its shard's header only; floating-point weights only."""
        with safe_open(self._shard(name), framework="pt") as f:
            info = f.get_slice(name)
            shape, dtype = tuple(info.get_shape()), info.get_dtype()
        if dtype not in FLOAT_DTYPES:
            raise UserError(
                f"{self.dir}: tensor {name} is {dtype}; only {', '.join(FLOAT_DTYPES)} weights convert"
            )
        return shape, FLOAT_DTYPES[dtype]


class HFWriter:
    """Writes tensors into numbered safetensors shards plus an index."""

    def __init__(self, directory: Path, max_shard_bytes: int = 2 * 1024**3):
        self.dir = directory
        self.max_shard_bytes = max_shard_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.shards: list[list[str]] = []
        self.total = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_shard_bytes:
            self._flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size
        self.total += size

    def _flush(self) -> None:
        save_file(
            self.pending, str(self.dir / f"shard-{len(self.shards):05d}.tmp"), metadata={"format": "pt"}
        )
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        """Write the last shard, give shards their final names and write the index."""
        if self.pending:
            self._flush()
        count = len(self.shards)
        weight_map = {}
        for i, names in enumerate(self.shards):
            final = f"model-{i + 1:05d}-of-{count:05d}.safetensors"
            os.replace(self.dir / f"shard-{i:05d}.tmp", self.dir / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")


def copy_side_files(source: Path, target: Path) -> None:
    """Copy tokenizer and generation-config files that exist in ``source``."""
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
