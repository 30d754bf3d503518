"""Apply a vocabulary expansion to a Hugging Face or a Megatron checkpoint, writing a new one.

Only the embedding and output-layer tensors (and an LM-head bias: ``resize_bias``) are read and rewritten. For a Hugging Face model the
shards that hold neither are copied byte for byte; for a Megatron ``dist_checkpointing`` directory
the data files are copied and the two tensors are swapped through the metadata
(``megacpt.checkpoint.tensors.replace_tensors``), so the transformer body is never loaded for the rows themselves.
Megatron padding is recomputed from the new true size for the target TP.

Tied embeddings stay tied by default: one table, whose new rows get the input method (plus the
logit calibration, which concerns the output role). ``untie=True`` gives the output layer its own
table: the old rows copied from the embedding, the new rows from the output method. The optional
``Calibration`` (``megacpt.convert.calibrate``) is added to the new output rows; computing it runs
the base model once (``calibration_for``). The output is written under a temporary name and
renamed when complete; the input is never modified.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from megacpt.atomic import CHECKPOINT, HF_MODEL, atomic_directory
from megacpt.checkpoint.meta import HF_SUBDIR, META, check_merged, read_meta
from megacpt.checkpoint.tensors import read_tensors, replace_tensors
from megacpt.config.megatron import padded_vocab_size
from megacpt.convert import families as fam
from megacpt.convert.calibrate import Calibration, calibrate, hf_hidden
from megacpt.convert.distill import LearntRows, hf_base, learn_rows, make_windows
from megacpt.convert.megatron_to_hf import convert_megatron_to_hf
from megacpt.convert.methods import DistillConfig
from megacpt.convert.resize import NEW_TOKENS_FILE, Expansion, new_rows, resize_bias, resize_table
from megacpt.convert.safetensors_io import INDEX, SIDE_FILES, HFReader, copy_side_files
from megacpt.errors import UserError
from megacpt.inputs import read_json

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


def calibration_for(
    source: str | os.PathLike, expansion: Expansion, megatron_meta: dict[str, Any] | None
) -> Calibration:
    """Run the base model (a Hugging Face directory, or the megacpt checkpoint whose metadata is
    ``megatron_meta``) once to calibrate the new rows' logits; needs the expansion's frequencies."""
    if expansion.frequencies is None:
        raise UserError(
            f"logit calibration needs the new tokens' frequencies ({NEW_TOKENS_FILE} of tools/expand_vocab.py); "
            "give that tokenizer, or --logit-calibration none"
        )
    if megatron_meta is None:
        config = HFReader(source).config
        return calibrate(
            expansion.pieces,
            expansion.frequencies,
            hf_hidden(str(source)),
            int(config.get("max_position_embeddings", 2048)),
        )
    from megacpt.checkpoint.model import final_hidden_states, open_checkpoint_model

    with open_checkpoint_model(source, megatron_meta) as model:
        return calibrate(
            expansion.pieces,
            expansion.frequencies,
            lambda t: final_hidden_states(model, t),
            int(megatron_meta["model"]["max_position_embeddings"]),
        )


Role = tuple[str, int, "torch.Tensor | None", "torch.Tensor | None"]  # method, seed, shift, rows


def _roles(
    tied: bool,
    untie: bool,
    methods: tuple[str, str],
    seed: int,
    calibration: Calibration | None,
    input_rows: torch.Tensor | None = None,
) -> tuple[Role, Role | None]:
    """(method, seed, shift, given rows) of the input table, and of the output table (None when
    tied). Given input rows (distilled) already carry the calibration when the table stays tied."""
    shift = calibration.shift() if calibration is not None else None
    if tied and not untie:
        return (methods[0], seed, None if input_rows is not None else shift, input_rows), None
    return (methods[0], seed, None, input_rows), (methods[1], seed + 1, shift, None)


def distilled_input_rows(
    source: str | os.PathLike,
    megatron_meta: dict[str, Any] | None,
    expansion: Expansion,
    tokenizers: tuple[str | os.PathLike, str | os.PathLike],
    texts: list[str],
    cfg: DistillConfig,
    shift: torch.Tensor | None,
) -> LearntRows:
    """New input rows distilled on ``texts`` with the base model ``source`` (a Hugging Face directory,
    or a megacpt checkpoint, run through a temporary Hugging Face export), starting from
    ``subword_mean`` plus ``shift`` (the calibration, for a table that stays tied)."""
    from transformers import AutoTokenizer

    base_tokenizer, tokenizer = (AutoTokenizer.from_pretrained(str(t)) for t in tokenizers)
    eod = base_tokenizer.eos_token_id
    if eod is None:
        raise UserError(
            f"{tokenizers[0]}: the base tokenizer has no end-of-sequence token to start windows with"
        )
    windows = make_windows(texts, base_tokenizer, tokenizer, expansion.old_size, int(eod), cfg)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(source)
        if megatron_meta is not None:
            hf_dir = convert_megatron_to_hf(source, Path(tmp) / "hf", tokenizers[0])
        base = hf_base(str(hf_dir))
    start = new_rows("subword_mean", base.embedding[: expansion.old_size], expansion.pieces)
    if shift is not None:
        start = start + shift
    return learn_rows(base, windows, start, expansion.old_size, cfg)


def describe(tied: bool, untie: bool, methods: tuple[str, str], calibration: Calibration | None) -> str:
    """One line on what the resize did with the rows, for the tool's output."""
    cal = " + frequency logit calibration" if calibration is not None else ""
    if tied and not untie:
        return f"tied embeddings kept tied: one table, new rows {methods[0]}{cal}"
    head = "embeddings untied: " if tied else ""
    return f"{head}input rows {methods[0]}, output rows {methods[1]}{cal}"


def resize_hf(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    expansion: Expansion,
    methods: tuple[str, str],
    seed: int = 0,
    tokenizer_dir: str | os.PathLike | None = None,
    calibration: Calibration | None = None,
    untie: bool = False,
    overwrite: bool = False,
    input_rows: torch.Tensor | None = None,
) -> Path:
    """A Hugging Face model with ``expansion.new_size`` rows (no padding: HF tables have the true size)."""
    hf = HFReader(hf_dir)
    fam.family_of(hf.config)
    _check_sizes(hf_dir, int(hf.config["vocab_size"]), expansion)
    tied = fam.HF_OUTPUT not in hf
    input_role, output_role = _roles(tied, untie, methods, seed, calibration, input_rows)
    roles = {fam.HF_EMBEDDING: input_role}
    if output_role is not None:
        roles[fam.HF_OUTPUT] = output_role
    head_bias = fam.FAMILIES["phi"].top_keys[fam.OUTPUT_BIAS]
    touched = {hf.weight_map[name] for name in [*roles, head_bias] if name in hf}
    with atomic_directory(out_dir, HF_MODEL, replace=overwrite) as tmp:
        delta = 0  # growth in bytes, for the index's total_size
        for shard in sorted(set(hf.weight_map.values())):
            if shard not in touched:
                shutil.copy2(hf.dir / shard, tmp / shard)
                continue
            with safe_open(hf.dir / shard, framework="pt") as f:
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
            if tied and untie and fam.HF_EMBEDDING in tensors:
                tensors[fam.HF_OUTPUT] = tensors[fam.HF_EMBEDDING].clone()
                delta += tensors[fam.HF_OUTPUT].numel() * tensors[fam.HF_OUTPUT].element_size()
            for name, (method, role_seed, shift, given) in roles.items():
                if name in tensors:
                    old = tensors[name]
                    tensors[name] = resize_table(
                        old, expansion, method, expansion.new_size, role_seed, shift, given
                    )
                    delta += (tensors[name].numel() - old.numel()) * old.element_size()
            if head_bias in tensors:
                tensors[head_bias] = resize_bias(
                    tensors[head_bias], expansion, methods[1], expansion.new_size, seed + 1
                )
                delta += (expansion.new_size - expansion.old_size) * tensors[head_bias].element_size()
            save_file(tensors, str(tmp / shard), metadata={"format": "pt"})
        if (hf.dir / INDEX).is_file():
            index = read_json(hf.dir / INDEX)
            metadata = index.get("metadata") or {}
            if "total_size" in metadata:
                index["metadata"] = dict(metadata, total_size=int(metadata["total_size"]) + delta)
            if tied and untie:
                index["weight_map"][fam.HF_OUTPUT] = hf.weight_map[fam.HF_EMBEDDING]
            (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        config = dict(hf.config, vocab_size=expansion.new_size)
        if tied and untie:
            config["tie_word_embeddings"] = False
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
    calibration: Calibration | None = None,
    untie: bool = False,
    overwrite: bool = False,
    input_rows: torch.Tensor | None = None,
) -> Path:
    """A megacpt checkpoint with the vocabulary grown; padded for ``tensor_parallel_size``."""
    meta = read_meta(ckpt_dir)
    check_merged(meta, ckpt_dir)
    _check_sizes(ckpt_dir, int(meta["vocab_size"]), expansion)
    tied = bool(meta["model"]["tie_embeddings"])
    model = dict(meta["model"], vocab_size=expansion.new_size, tie_embeddings=tied and not untie)
    rows = padded_vocab_size(
        expansion.new_size, int(model["make_vocab_size_divisible_by"]), tensor_parallel_size
    )
    input_role, output_role = _roles(tied, untie, methods, seed, calibration, input_rows)
    with atomic_directory(out_dir, CHECKPOINT, replace=overwrite) as tmp:
        shutil.copytree(ckpt_dir, tmp, dirs_exist_ok=True)
        embedding = read_tensors(ckpt_dir, [fam.EMBEDDING])[fam.EMBEDDING]
        tables = {fam.EMBEDDING: resize_table(embedding, expansion, input_role[0], rows, *input_role[1:])}
        if output_role is not None:
            source = embedding if tied else read_tensors(ckpt_dir, [fam.OUTPUT])[fam.OUTPUT]
            tables[fam.OUTPUT] = resize_table(source, expansion, output_role[0], rows, *output_role[1:])
            del source
        if model.get("output_layer_bias"):
            bias = read_tensors(ckpt_dir, [fam.OUTPUT_BIAS])[fam.OUTPUT_BIAS]
            tables[fam.OUTPUT_BIAS] = resize_bias(bias, expansion, methods[1], rows, seed + 1)
        del embedding
        for key, table in tables.items():
            replace_tensors(tmp, {key: table}, f"__resized_{key}.distcp", add=tied and key == fam.OUTPUT)
        meta.update(vocab_size=expansion.new_size, model=model)
        if "hf" in meta:
            meta["hf"]["config"] = dict(meta["hf"]["config"], vocab_size=expansion.new_size)
            if tied and untie:
                meta["hf"]["config"]["tie_word_embeddings"] = False
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if tokenizer_dir is not None:
            (tmp / HF_SUBDIR).mkdir(exist_ok=True)
            _copy_tokenizer(tokenizer_dir, tmp / HF_SUBDIR)
    return Path(out_dir)
