"""A megacpt checkpoint as a single-process model: for the few tools that must run a forward pass.

``open_checkpoint_model`` builds the checkpoint's ``GPTModel`` at TP = PP = 1 in this process (a
world of one on gloo, or the current GPU), loads its weights and tears the runtime down on exit.
It is meant for small forward passes such as the logit calibration of new vocabulary rows, on
models that fit one device.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from megacpt.config.loader import from_dict
from megacpt.config.megatron import transformer_config
from megacpt.config.schema import Config, ModelConfig


@contextmanager
def open_checkpoint_model(ckpt_dir: str | os.PathLike, meta: dict) -> Iterator[torch.nn.Module]:
    """The checkpoint's ``GPTModel`` (eval mode) in a runtime of one process, torn down on exit."""
    from megacpt.checkpoint.state import load_pretrained
    from megacpt.model.builder import build_model
    from megacpt.parallel.runtime import init_runtime, shutdown

    model_config = from_dict(ModelConfig, meta["model"], "model")
    model_config.transformer_impl = "local"
    config = Config(model=model_config)
    init_runtime(config)
    try:
        (model,) = build_model(config, transformer_config(config))
        load_pretrained(ckpt_dir, [model], model_config.vocab_size)
        model.eval()
        yield model
    finally:
        shutdown(wait_for_others=False)


@torch.no_grad()
def final_hidden_states(model: torch.nn.Module, tokens_bs: torch.Tensor) -> torch.Tensor:
    """The normalised hidden states that enter the output layer, ``[b, s, hidden]`` in fp32."""
    captured: list[torch.Tensor] = []
    output_layer: Any = model.output_layer
    handle = output_layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        device = next(model.parameters()).device
        tokens_bs = tokens_bs.to(device)
        positions = torch.arange(tokens_bs.shape[1], device=device).expand_as(tokens_bs)
        model(tokens_bs, positions, None)
    finally:
        handle.remove()
    hidden_sbh = captured[0]
    return hidden_sbh.transpose(0, 1).float().cpu()
