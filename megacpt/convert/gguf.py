"""Import a GGUF checkpoint (llama.cpp's file format) as a Hugging Face model directory.

The reading is transformers' own GGUF loader (``from_pretrained(dir, gguf_file=...)``, which needs
the ``gguf`` package): it maps the tensor names, undoes llama.cpp's Q/K row permutation and
dequantises every tensor (Q4_1, Q8_0, ...) to float32, and it rebuilds the tokenizer from the
file's metadata. What it returns still carries a ``quantization_config`` that no plain
``from_pretrained`` can honour, so the weights are written as ordinary safetensors with a clean
``config.json``; the result converts to Megatron like any Hugging Face model. Only architectures
that megacpt converts (``megacpt.convert.families``) are accepted, checked from the file header
before any tensor is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from megacpt.atomic import HF_MODEL, atomic_directory
from megacpt.convert import families as fam
from megacpt.convert.safetensors_io import HFWriter
from megacpt.errors import UserError
from megacpt.tokenizer.hf_files import save_tokenizer

# GGUF ``general.architecture`` values whose transformers model megacpt converts.
GGUF_ARCHITECTURES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` from a GGUF header; a file that is not GGUF is a ``UserError``."""
    from gguf import GGUFReader

    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise UserError(f"{path}: not a GGUF file (no GGUF magic number)")
    try:
        field = GGUFReader(path).fields["general.architecture"]
    except (KeyError, ValueError, IndexError) as err:
        raise UserError(f"{path}: unreadable GGUF header ({err})") from None
    return str(field.contents())


def import_gguf(
    gguf_file: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "float32", overwrite: bool = False
) -> Path:
    """Write ``out_dir`` (weights, ``config.json``, generation config, tokenizer) from ``gguf_file``; an
    existing ``out_dir`` is replaced only with ``overwrite``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    path = Path(gguf_file)
    arch = gguf_architecture(path)
    if arch not in GGUF_ARCHITECTURES:
        raise UserError(
            f"{path}: unsupported GGUF architecture {arch!r}; supported: {', '.join(sorted(GGUF_ARCHITECTURES))}"
        )
    if dtype not in _DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    where = dict(pretrained_model_name_or_path=str(path.parent), gguf_file=path.name)
    transformers_logging.disable_progress_bar()  # one bar per tensor: noise in a tool's output
    try:
        tokenizer = AutoTokenizer.from_pretrained(**where)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype=_DTYPES[dtype])
    except (ValueError, KeyError, NotImplementedError) as err:
        raise UserError(f"{path}: transformers cannot read this GGUF file ({err})") from None
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    fam.family_of(config)  # the architecture as transformers read it must be one megacpt converts
    config["architectures"] = [type(model).__name__]
    config["dtype"] = dtype
    tied = bool(config.get("tie_word_embeddings", False))
    with atomic_directory(out_dir, HF_MODEL, replace=overwrite) as tmp:
        writer = HFWriter(tmp)
        for name, tensor in model.state_dict().items():
            if tied and name == fam.HF_OUTPUT:
                continue  # the same storage as the embedding; transformers re-ties it on load
            writer.add(name, tensor.detach().clone())
        model.generation_config.save_pretrained(tmp)
        del model
        writer.close()
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_tokenizer(tokenizer, tmp)
    return Path(out_dir)
