"""Convert a Hugging Face Llama/Mistral/Qwen2/Phi checkpoint into a megacpt Megatron-core checkpoint.

The output is a ``dist_checkpointing`` directory that ``megacpt.checkpoint.state.load_pretrained``
loads at any TP/PP, plus ``megacpt.json`` holding the true vocabulary size, the megacpt model
config and the original ``config.json``, and ``hf/`` holding the tokenizer and generation config
so that an export back to Hugging Face is complete.

The conversion streams: every Megatron tensor is first declared from the safetensors headers
(shapes checked against ``config.json`` before anything is written), then read, fused and written
one at a time while ``dist_checkpointing`` saves (``streaming_save``). Peak memory is about
the largest tensor or two shards of one key, never the model (``bench/convert_memory.py``
measures it). Tensors keep their stored dtype.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from megatron.core.dist_checkpointing import ShardedObject, ShardedTensor

from megacpt.atomic import CHECKPOINT, atomic_directory
from megacpt.checkpoint.meta import HF_SUBDIR
from megacpt.checkpoint.tensors import (
    declared,
    full_tensor,
    layer_extra_state,
    layer_tensor,
    write_checkpoint,
)
from megacpt.compat.streaming_save import Loader
from megacpt.config.megatron import padded_vocab_size
from megacpt.config.schema import ModelConfig
from megacpt.convert import families as fam
from megacpt.convert.safetensors_io import HFReader, copy_side_files
from megacpt.errors import UserError

Join = Callable[[list[torch.Tensor]], torch.Tensor]


def pad_rows(table: torch.Tensor, rows: int) -> torch.Tensor:
    """``table`` with zero rows appended up to ``rows`` (Megatron's padded vocabulary)."""
    if rows == table.shape[0]:
        return table
    return torch.cat([table, table.new_zeros(rows - table.shape[0], *table.shape[1:])])


@dataclass
class Plan:
    """A conversion declared but not run: Megatron entries over ``meta`` tensors and their loaders."""

    state: dict[str, ShardedTensor | ShardedObject]
    loaders: dict[str, Loader]
    meta: dict[str, Any]


def _layer_shapes(m: ModelConfig, family: fam.Family) -> dict[str, tuple[int, ...]]:
    """Shape of each Hugging Face tensor inside ``model.layers.{i}.`` that ``config.json`` implies."""
    h, heads, groups = m.hidden_size, m.num_attention_heads, m.groups
    d, ffn = m.head_dim, m.ffn
    shapes: dict[str, tuple[int, ...]] = {
        "self_attn.q_proj.weight": (heads * d, h),
        "self_attn.k_proj.weight": (groups * d, h),
        "self_attn.v_proj.weight": (groups * d, h),
    }
    if family.model_type == "phi":
        shapes.update(
            {
                "input_layernorm.weight": (h,),
                "input_layernorm.bias": (h,),
                "self_attn.dense.weight": (h, heads * d),
                "self_attn.dense.bias": (h,),
                "mlp.fc1.weight": (ffn, h),
                "mlp.fc1.bias": (ffn,),
                "mlp.fc2.weight": (h, ffn),
                "mlp.fc2.bias": (h,),
            }
        )
    else:
        shapes.update(
            {
                "input_layernorm.weight": (h,),
                "post_attention_layernorm.weight": (h,),
                "self_attn.o_proj.weight": (h, heads * d),
                "mlp.gate_proj.weight": (ffn, h),
                "mlp.up_proj.weight": (ffn, h),
                "mlp.down_proj.weight": (h, ffn),
            }
        )
    if m.add_qkv_bias:
        shapes.update(
            {f"self_attn.{p}_proj.bias": (n * d,) for p, n in (("q", heads), ("k", groups), ("v", groups))}
        )
    return shapes


def _declare(
    hf: HFReader, names: list[str], shapes: dict[str, tuple[int, ...]], dim0: int | None = None
) -> torch.Tensor:
    """A ``meta`` tensor for ``names`` concatenated on dim 0 (``dim0`` rows if given), checking each header."""
    dtypes = set()
    for name in names:
        shape, dtype = hf.header(name)
        if shape != shapes[name]:
            raise UserError(f"{hf.dir}: {name} has shape {shape}, but config.json implies {shapes[name]}")
        dtypes.add(dtype)
    if len(dtypes) > 1:
        raise UserError(f"{hf.dir}: {', '.join(names)} differ in dtype ({sorted(map(str, dtypes))})")
    first = shapes[names[0]]
    rows = dim0 if dim0 is not None else sum(shapes[n][0] for n in names)
    return declared((rows, *first[1:]), dtypes.pop())


def plan_conversion(
    hf_dir: str | os.PathLike, make_vocab_size_divisible_by: int = 128, tensor_parallel_size: int = 1
) -> Plan:
    """Declare the Megatron checkpoint for ``hf_dir``; vocabulary rows padded for ``tensor_parallel_size``."""
    hf = HFReader(hf_dir)
    family = fam.family_of(hf.config)
    m = fam.model_config(hf.config, make_vocab_size_divisible_by)
    rows = padded_vocab_size(m.vocab_size, make_vocab_size_divisible_by, tensor_parallel_size)
    embedding_rows = hf.header(fam.HF_EMBEDDING)[0][0]
    if embedding_rows != m.vocab_size:
        raise UserError(
            f"{hf_dir}: embedding has {embedding_rows} rows but config.json vocab_size is {m.vocab_size}"
        )
    top_shapes = {
        fam.EMBEDDING: (m.vocab_size, m.hidden_size),
        fam.OUTPUT: (m.vocab_size, m.hidden_size),
        fam.OUTPUT_BIAS: (m.vocab_size,),
    }
    state: dict[str, ShardedTensor | ShardedObject] = {}
    loaders: dict[str, Loader] = {}
    used: set[str] = set()
    for key, name in fam.top_keys(family, m).items():
        padded = rows if key in fam.VOCAB_KEYS else None
        used.add(name)
        state[key] = full_tensor(
            key, _declare(hf, [name], {name: top_shapes.get(key, (m.hidden_size,))}, padded)
        )
        loaders[key] = partial(_read, hf, [name], _only if padded is None else partial(_padded, padded))
    shapes = _layer_shapes(m, family)
    for i in range(m.num_layers):
        prefix = f"model.layers.{i}."
        at = {prefix + k: v for k, v in shapes.items()}
        for key, parts, join in _layer_sources(m, family):
            names = [prefix + p for p in parts]
            used.update(names)
            state[f"{key}.{i}"] = layer_tensor(key, _declare(hf, names, at), i, m.num_layers)
            loaders[f"{key}.{i}"] = partial(_read, hf, names, join)
        for key in fam.EXTRA_STATE_KEYS:
            state[f"{key}.{i}"] = layer_extra_state(key, i, m.num_layers)
    _check_all_used(hf, used, m, family)
    meta = {
        "vocab_size": m.vocab_size,
        "model": dataclasses.asdict(m),
        "hf": {"model_type": family.model_type, "config": hf.config},
    }
    return Plan(state, loaders, meta)


def _check_all_used(hf: HFReader, used: set[str], m: ModelConfig, family: fam.Family) -> None:
    """Every tensor of the source must go somewhere: a leftover means config.json describes another model."""
    # some tied checkpoints store the head too
    ignorable = {family.top_keys[fam.OUTPUT]} if m.tie_embeddings else set()
    unused = sorted(
        n
        for n in hf.weight_map
        if n not in used and n not in ignorable and not n.endswith("rotary_emb.inv_freq")
    )
    if unused:
        raise UserError(
            f"{hf.dir} holds {len(unused)} tensor(s) the model its config.json describes does not use, e.g. "
            f"{unused[0]} (num_hidden_layers is {m.num_layers}): fix config.json or the weights"
        )


def _read(hf: HFReader, names: list[str], join: Join) -> torch.Tensor:
    return join([hf.get(name) for name in names])


def _only(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0]


def _padded(rows: int, tensors: list[torch.Tensor]) -> torch.Tensor:
    return pad_rows(tensors[0], rows)


def _layer_sources(m: ModelConfig, family: fam.Family) -> list[tuple[str, list[str], Join]]:
    """(Megatron key, the Hugging Face names inside a layer it is made of, how they are joined)."""
    out: list[tuple[str, list[str], Join]] = [(key, [name], _only) for key, name in family.layer_keys.items()]
    for key, kind in ((fam.QKV_WEIGHT, "weight"), (fam.QKV_BIAS, "bias"))[: 1 + m.add_qkv_bias]:
        out.append(
            (key, [f"self_attn.{p}_proj.{kind}" for p in "qkv"], lambda t: fam.fuse_qkv(t[0], t[1], t[2], m))
        )
    out.append((fam.FC1, list(family.fc1), torch.cat))
    return out


def convert_hf_to_megatron(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    make_vocab_size_divisible_by: int = 128,
    tensor_parallel_size: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir`` from ``hf_dir``; vocabulary rows padded for ``tensor_parallel_size`` with zeros.
    An existing ``out_dir`` is replaced only with ``overwrite`` (``megacpt.options``)."""
    plan = plan_conversion(hf_dir, make_vocab_size_divisible_by, tensor_parallel_size)
    with atomic_directory(out_dir, CHECKPOINT, replace=overwrite) as tmp:
        write_checkpoint(plan.state, tmp, plan.meta, plan.loaders)
        (tmp / HF_SUBDIR).mkdir()
        copy_side_files(Path(hf_dir), tmp / HF_SUBDIR)
    return Path(out_dir)
