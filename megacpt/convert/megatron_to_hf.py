"""Export a megacpt Megatron-core checkpoint (any TP/PP layout) to a Hugging Face model directory.

Reads one stacked tensor at a time from the ``dist_checkpointing`` directory (no model is built),
drops the vocabulary padding rows, splits Megatron's fused QKV and gate/up layers back into
Hugging Face's tensors and writes safetensors shards with an index, ``config.json`` (the original
one updated, when the checkpoint came from Hugging Face), the generation config and the tokenizer.
The result loads with ``transformers.AutoModelForCausalLM.from_pretrained`` offline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from megacpt.atomic import HF_MODEL, atomic_directory
from megacpt.checkpoint.meta import HF_SUBDIR, check_merged, read_meta, resolve
from megacpt.checkpoint.tensors import read_tensors
from megacpt.config.loader import from_dict
from megacpt.config.schema import ModelConfig
from megacpt.convert import families as fam
from megacpt.convert.safetensors_io import HFWriter, copy_side_files
from megacpt.errors import UserError

DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _layer_tensors(
    key: str, stacked: torch.Tensor, m: ModelConfig, family: fam.Family
) -> list[tuple[str, torch.Tensor]]:
    """Hugging Face (suffix, tensor) pairs of every layer for one stacked Megatron key."""
    out = []
    for i in range(m.num_layers):
        prefix = f"model.layers.{i}."
        t = stacked[i]
        if key in family.layer_keys:
            out.append((prefix + family.layer_keys[key], t.clone()))
        elif key in (fam.QKV_WEIGHT, fam.QKV_BIAS):
            kind = key.rsplit(".", 1)[1]
            for p, part in zip("qkv", fam.split_qkv(t, m)):
                out.append((f"{prefix}self_attn.{p}_proj.{kind}", part.clone()))
        elif key == fam.FC1:  # Llama's gate and up halves, or Phi's one fc1
            out += [(prefix + name, part.clone()) for name, part in zip(family.fc1, t.chunk(len(family.fc1)))]
    return out


def _generation_config(model_dir: Path, config: dict) -> dict:
    """Special-token ids for ``generate``: the tokenizer's where the export has one, else the config's."""
    keys = ("bos_token_id", "eos_token_id", "pad_token_id")
    ids = {k: config.get(k) for k in keys}
    if (model_dir / "tokenizer.json").is_file() or (model_dir / "tokenizer.model").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        ids.update({k: getattr(tokenizer, k) for k in keys if getattr(tokenizer, k) is not None})
    return {k: v for k, v in ids.items() if v is not None}


def convert_megatron_to_hf(
    ckpt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike | None = None,
    max_shard_bytes: int = 2 * 1024**3,
    overwrite: bool = False,
) -> Path:
    """Write a Hugging Face model directory ``out_dir`` from the checkpoint ``ckpt_dir`` (or the one a
    checkpoint root's ``latest`` names). The tokenizer is ``tokenizer_dir`` or the one the checkpoint
    carries (``hf/``); a checkpoint without one exports without one, and says so. An existing
    ``out_dir`` is replaced only with ``overwrite``."""
    ckpt_dir = resolve(ckpt_dir)
    meta = read_meta(ckpt_dir)
    check_merged(meta, ckpt_dir)
    m = from_dict(ModelConfig, meta["model"], "model")
    if m.vocab_size != meta["vocab_size"]:
        raise UserError(
            f"{ckpt_dir}: megacpt.json vocab_size {meta['vocab_size']} disagrees with its model config"
        )
    hf_meta = meta.get("hf", {})
    family = fam.family_of_model(m, hf_meta.get("model_type"))
    fam.check_expressible(m, family)
    qkv_bias = m.add_qkv_bias or m.add_bias_linear  # Megatron gives q/k/v a bias with either
    layer_keys = [*family.layer_keys, fam.QKV_WEIGHT, fam.FC1] + ([fam.QKV_BIAS] if qkv_bias else [])
    side = Path(tokenizer_dir) if tokenizer_dir else Path(ckpt_dir) / HF_SUBDIR
    with atomic_directory(out_dir, HF_MODEL, replace=overwrite) as tmp:
        writer = HFWriter(tmp, max_shard_bytes)
        dtype = torch.float32
        for key, name in fam.top_keys(family, m).items():
            table = read_tensors(ckpt_dir, [key])[key]
            if key in fam.VOCAB_KEYS:
                if table.shape[0] < m.vocab_size:
                    raise UserError(
                        f"{ckpt_dir}: {key} has {table.shape[0]} rows, fewer than vocab_size {m.vocab_size}"
                    )
                dtype = table.dtype if key == fam.EMBEDDING else dtype
                table = table[: m.vocab_size].clone()
            writer.add(name, table)
        for key in layer_keys:
            for name, tensor in _layer_tensors(key, read_tensors(ckpt_dir, [key])[key], m, family):
                writer.add(name, tensor)
        writer.close()
        config = fam.hf_config_from_model(m, family, hf_meta.get("config"))
        config.pop("torch_dtype", None)  # transformers 4.x name of ``dtype``; keep one, true to the weights
        config["dtype"] = DTYPE_NAMES.get(dtype, "float32")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if side.is_dir():
            copy_side_files(side, tmp)
        if not (tmp / "generation_config.json").is_file():  # what transformers derives from a config
            generation = {
                k: config[k]
                for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                if config.get(k) is not None
            }
            (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        if not (tmp / "tokenizer.json").is_file() and not (tmp / "tokenizer.model").is_file():
            print(
                f"note: {ckpt_dir} carries no tokenizer: the export has none (pass --tokenizer DIR)",
                file=sys.stderr,
            )
    return Path(out_dir)
