"""Apply a vocabulary expansion to a Hugging Face or a Megatron checkpoint, writing a new one.

Only the embedding and output-layer tensors are read and rewritten. For a Hugging Face model the
shards that hold neither are copied byte for byte; for a Megatron ``dist_checkpointing`` directory
the data files are copied and the two tensors are swapped through the metadata
(``megatron_io.replace_tensors``), so the transformer body is never loaded. Megatron padding is
recomputed from the new true size for the target TP. Tied embeddings have one table, initialised
with the input method. The output is written under a temporary name and renamed when complete; the
input is never modified.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from megacpt.config.megatron import padded_vocab_size
from megacpt.convert import families as fam
from megacpt.convert.hf_to_megatron import HF_SUBDIR
from megacpt.convert.megatron_io import META, read_meta, read_tensors, replace_tensors
from megacpt.convert.resize import Expansion, resize_table
from megacpt.convert.safetensors_io import INDEX, SIDE_FILES, HFReader, atomic_directory, copy_side_files
from megacpt.errors import UserError

TOKENIZER_FILES = tuple(name for name in SIDE_FILES if name != "generation_config.json")


def _check_sizes(where: Any, vocab_size: int, expansion: Expansion) -> None:
    if vocab_size != expansion.old_size:
        raise UserError(
            f"{where}: checkpoint vocabulary size {vocab_size} disagrees with the base tokenizer's {expansion.old_size}"
        )


def _copy_tokenizer(tokenizer_dir: str | os.PathLike | None, target: Path) -> None:
    if tokenizer_dir is None:
        return
    for name in TOKENIZER_FILES:
        (target / name).unlink(missing_ok=True)
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copy2(Path(tokenizer_dir) / name, target / name)


def resize_hf(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    expansion: Expansion,
    methods: tuple[str, str],
    seed: int = 0,
    tokenizer_dir: str | os.PathLike | None = None,
) -> Path:
    """A Hugging Face model with ``expansion.new_size`` rows (no padding: HF tables have the true size)."""
    hf = HFReader(hf_dir)
    fam.family_of(hf.config)
    _check_sizes(hf_dir, int(hf.config["vocab_size"]), expansion)
    roles = {fam.HF_EMBEDDING: (methods[0], seed)}
    if fam.HF_OUTPUT in hf:
        roles[fam.HF_OUTPUT] = (methods[1], seed + 1)
    touched = {hf.weight_map[name] for name in roles}
    with atomic_directory(out_dir) as tmp:
        delta = 0  # growth in bytes, for the index's total_size
        for shard in sorted(set(hf.weight_map.values())):
            if shard not in touched:
                shutil.copy2(hf.dir / shard, tmp / shard)
                continue
            with safe_open(hf.dir / shard, framework="pt") as f:
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
            for name, (method, role_seed) in roles.items():
                if name in tensors:
                    old = tensors[name]
                    tensors[name] = resize_table(old, expansion, method, expansion.new_size, role_seed)
                    delta += (tensors[name].numel() - old.numel()) * old.element_size()
            save_file(tensors, str(tmp / shard), metadata={"format": "pt"})
        if (hf.dir / INDEX).is_file():
            index = json.loads((hf.dir / INDEX).read_text())
            metadata = index.get("metadata") or {}
            if "total_size" in metadata:
                index["metadata"] = dict(metadata, total_size=int(metadata["total_size"]) + delta)
            (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        config = dict(hf.config, vocab_size=expansion.new_size)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        copy_side_files(hf.dir, tmp)
        _copy_tokenizer(tokenizer_dir, tmp)
    return Path(out_dir)


def resize_megatron(
    ckpt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    expansion: Expansion,
    methods: tuple[str, str],
    seed: int = 0,
    tensor_parallel_size: int = 1,
    tokenizer_dir: str | os.PathLike | None = None,
) -> Path:
    """A megacpt checkpoint with the vocabulary grown; padded for ``tensor_parallel_size``."""
    meta = read_meta(ckpt_dir)
    _check_sizes(ckpt_dir, int(meta["vocab_size"]), expansion)
    model = dict(meta["model"], vocab_size=expansion.new_size)
    rows = padded_vocab_size(
        expansion.new_size, int(model["make_vocab_size_divisible_by"]), tensor_parallel_size
    )
    roles = {fam.EMBEDDING: (methods[0], seed)}
    if not model["tie_embeddings"]:
        roles[fam.OUTPUT] = (methods[1], seed + 1)
    with atomic_directory(out_dir) as tmp:
        shutil.copytree(ckpt_dir, tmp, dirs_exist_ok=True)
        for key, (method, role_seed) in roles.items():
            table = read_tensors(ckpt_dir, [key])[key]
            replace_tensors(
                tmp, {key: resize_table(table, expansion, method, rows, role_seed)}, f"__resized_{key}.distcp"
            )
            del table
        meta.update(vocab_size=expansion.new_size, model=model)
        if "hf" in meta:
            meta["hf"]["config"] = dict(meta["hf"]["config"], vocab_size=expansion.new_size)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if tokenizer_dir is not None:
            (tmp / HF_SUBDIR).mkdir(exist_ok=True)
            _copy_tokenizer(tokenizer_dir, tmp / HF_SUBDIR)
    return Path(out_dir)
