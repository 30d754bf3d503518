"""Convert a Hugging Face Llama/Mistral/Qwen2 checkpoint into a megacpt Megatron-core checkpoint.

The output is a ``dist_checkpointing`` directory that ``megacpt.training.checkpoint.load_pretrained``
loads at any TP/PP, plus ``megacpt.json`` holding the true vocabulary size, the megacpt model
config and the original ``config.json``, and ``hf/`` holding the tokenizer and generation config
so that an export back to Hugging Face is complete. Tensors are read one at a time from the
safetensors shards and kept in their stored dtype; the converted model is held once in memory
while ``dist_checkpointing`` writes it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from megatron.core.dist_checkpointing import ShardedObject, ShardedTensor

from megacpt.config.megatron import padded_vocab_size
from megacpt.config.schema import ModelConfig
from megacpt.convert import families as fam
from megacpt.convert.megatron_io import full_tensor, layer_extra_state, layer_tensor, write_checkpoint
from megacpt.convert.safetensors_io import HFReader, atomic_directory, copy_side_files
from megacpt.errors import UserError

HF_SUBDIR = "hf"


def pad_rows(table: torch.Tensor, rows: int) -> torch.Tensor:
    """``table`` with zero rows appended up to ``rows`` (Megatron's padded vocabulary)."""
    if rows == table.shape[0]:
        return table
    return torch.cat([table, table.new_zeros(rows - table.shape[0], *table.shape[1:])])


def _layer_state(hf: HFReader, m: ModelConfig, i: int) -> dict[str, torch.Tensor]:
    prefix = f"model.layers.{i}."
    out = {key: hf.get(prefix + name) for key, name in fam.LAYER_KEYS.items()}
    attn = prefix + "self_attn."
    for key, kind in ((fam.QKV_WEIGHT, "weight"), (fam.QKV_BIAS, "bias"))[: 1 + m.add_qkv_bias]:
        q, k, v = (hf.get(f"{attn}{p}_proj.{kind}") for p in "qkv")
        out[key] = fam.fuse_qkv(q, k, v, m)
    out[fam.FC1] = torch.cat([hf.get(prefix + "mlp.gate_proj.weight"), hf.get(prefix + "mlp.up_proj.weight")])
    return out


def convert_hf_to_megatron(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    make_vocab_size_divisible_by: int = 128,
    tensor_parallel_size: int = 1,
) -> Path:
    """Write ``out_dir`` from ``hf_dir``; vocabulary rows padded for ``tensor_parallel_size`` with zeros."""
    hf = HFReader(hf_dir)
    family = fam.family_of(hf.config)
    m = fam.model_config(hf.config, make_vocab_size_divisible_by)
    rows = padded_vocab_size(m.vocab_size, make_vocab_size_divisible_by, tensor_parallel_size)
    embedding = hf.get(fam.HF_EMBEDDING)
    if embedding.shape[0] != m.vocab_size:
        raise UserError(
            f"{hf_dir}: embedding has {embedding.shape[0]} rows but config.json vocab_size is {m.vocab_size}"
        )
    state: dict[str, ShardedTensor | ShardedObject] = {
        fam.EMBEDDING: full_tensor(fam.EMBEDDING, pad_rows(embedding, rows)),
        fam.FINAL_NORM: full_tensor(fam.FINAL_NORM, hf.get(fam.HF_FINAL_NORM)),
    }
    if not m.tie_embeddings:
        state[fam.OUTPUT] = full_tensor(fam.OUTPUT, pad_rows(hf.get(fam.HF_OUTPUT), rows))
    for i in range(m.num_layers):
        for key, tensor in _layer_state(hf, m, i).items():
            state[f"{key}.{i}"] = layer_tensor(key, tensor, i, m.num_layers)
        for key in fam.EXTRA_STATE_KEYS:
            state[f"{key}.{i}"] = layer_extra_state(key, i, m.num_layers)
    meta = {
        "vocab_size": m.vocab_size,
        "model": dataclasses.asdict(m),
        "hf": {"model_type": family.model_type, "config": hf.config},
    }
    with atomic_directory(out_dir) as tmp:
        write_checkpoint(state, tmp, meta)
        (tmp / HF_SUBDIR).mkdir()
        copy_side_files(Path(hf_dir), tmp / HF_SUBDIR)
    return Path(out_dir)
