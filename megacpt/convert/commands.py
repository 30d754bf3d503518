"""The work behind ``megacpt convert`` and ``megacpt resize``, given their parsed options
(``megacpt.convert.cli`` parses and checks them without these imports)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from megacpt.checkpoint.meta import META, read_meta
from megacpt.config.loader import from_dict
from megacpt.config.schema import ModelConfig
from megacpt.config.validate import check_model_split
from megacpt.convert import families
from megacpt.convert.gguf import import_gguf
from megacpt.convert.hf_to_megatron import convert_hf_to_megatron
from megacpt.convert.megatron_to_hf import convert_megatron_to_hf
from megacpt.convert.methods import DistillConfig
from megacpt.convert.options import (
    ConvertOptions,
    GgufToHf,
    GgufToMegatron,
    HfToMegatron,
    MegatronToHf,
    ResizeOptions,
)
from megacpt.convert.resize import expansion_from_tokenizers
from megacpt.convert.resize_checkpoint import (
    calibration_for,
    describe,
    distilled_input_rows,
    resize_hf,
    resize_megatron,
)
from megacpt.convert.safetensors_io import HFReader
from megacpt.errors import UserError
from megacpt.tokenizer.corpus import iter_texts


def _to_megatron(hf_dir: Path, args: HfToMegatron) -> Path:
    model = families.model_config(HFReader(hf_dir).config, args.make_vocab_size_divisible_by)
    check_model_split(model, args.target_tp, args.target_pp)
    return convert_hf_to_megatron(
        hf_dir, args.output, args.make_vocab_size_divisible_by, args.target_tp, overwrite=args.overwrite
    )


def convert(args: ConvertOptions) -> Path:
    """Run ``megacpt convert``'s direction; the output directory."""
    if isinstance(args, GgufToHf):
        return import_gguf(args.input, args.output, args.dtype, overwrite=args.overwrite)
    if isinstance(args, GgufToMegatron):
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.output.parent) as tmp:
            return _to_megatron(import_gguf(args.input, Path(tmp) / "hf"), args)
    if isinstance(args, HfToMegatron):
        return _to_megatron(args.input, args)
    if isinstance(args, MegatronToHf):
        return convert_megatron_to_hf(
            args.input,
            args.output,
            args.tokenizer,
            args.max_shard_size_mb * 1024**2,
            overwrite=args.overwrite,
        )
    raise TypeError(f"no conversion for {type(args).__name__}")


def resize(args: ResizeOptions, methods: tuple[str, str], distill_cfg: DistillConfig | None) -> None:
    """Run ``megacpt resize`` with its resolved (input, output) methods and distillation settings."""
    expansion = expansion_from_tokenizers(args.base_tokenizer, args.tokenizer)
    meta = read_meta(args.input) if (args.input / META).is_file() else None
    if meta is not None:
        check_model_split(from_dict(ModelConfig, meta["model"], "model"), args.target_tp, 1)
        tied = bool(meta["model"]["tie_embeddings"])
    else:
        tied = families.HF_OUTPUT not in HFReader(args.input)
    if args.untie_embeddings and not tied:
        raise UserError(f"--untie-embeddings: {args.input} is already untied (it has its own output layer)")
    calibration = None
    if args.logit_calibration == "frequency":
        print("calibrating the new rows' logits (one forward pass of the base model) ...", flush=True)
        calibration = calibration_for(args.input, expansion, meta)
    input_rows = None
    if distill_cfg is not None:
        print("distilling the new input rows from the base model ...", flush=True)
        kept_tied = tied and not args.untie_embeddings
        learnt = distilled_input_rows(
            args.input,
            meta,
            expansion,
            (args.base_tokenizer, args.tokenizer),
            list(iter_texts(args.distill_text or ())),
            distill_cfg,
            calibration.shift() if calibration is not None and kept_tied else None,
        )
        print(learnt.summary(), flush=True)
        input_rows = learnt.input
    common: dict[str, Any] = dict(
        input_rows=input_rows,
        seed=args.seed,
        tokenizer_dir=args.tokenizer,
        calibration=calibration,
        untie=args.untie_embeddings,
        overwrite=args.overwrite,
    )
    if meta is not None:
        out = resize_megatron(
            args.input, args.output, expansion, methods, tensor_parallel_size=args.target_tp, **common
        )
    else:
        out = resize_hf(args.input, args.output, expansion, methods, **common)
    added = expansion.new_size - expansion.old_size
    print(f"wrote {out}: {expansion.old_size} -> {expansion.new_size} tokens ({added} new)")
    print(describe(tied, args.untie_embeddings, methods, calibration))
