"""Phi's parallel block on Megatron-core: ``x + attention(norm(x)) + mlp(norm(x))`` with one norm.

Megatron-core 0.16 has no parallel attention/MLP layer. This one is a ``TransformerLayer`` built
from a layer spec whose pre-MLP norm is ``SharedInputNorm``: a module without weights that hands
the MLP the output of the layer's input norm. Megatron's own forward then computes
``h = x + attention(norm(x))`` and ``h + mlp(norm(x))``, which is the parallel block, with its
bias-dropout-add, sequence parallelism and recompute unchanged. There is one norm weight (and
bias), under the key the local spec already gives it (``self_attention.linear_qkv.layer_norm_*``),
so converters and checkpoints see what they see for a Llama layer, minus the pre-MLP norm.
"""

from __future__ import annotations

from typing import Any

import torch
from megatron.core.transformer.transformer_layer import TransformerLayer


class SharedInputNorm(torch.nn.Module):
    """The pre-MLP "norm" of a parallel block: the layer's input-norm output, computed once."""

    def __init__(self, config: Any = None, hidden_size: int = 0, eps: float = 0.0) -> None:
        super().__init__()
        self.output: torch.Tensor | None = None

    def keep(self, _module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
        self.output = output

    def forward(self, _hidden_states: torch.Tensor) -> torch.Tensor:
        if self.output is None:
            raise RuntimeError("the parallel block's MLP ran before its input norm")
        output, self.output = self.output, None  # not kept past the layer's forward
        return output


class ParallelAttentionMLPLayer(TransformerLayer):
    """A transformer layer whose attention and MLP both read the one input norm's output."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.pre_mlp_layernorm, SharedInputNorm):
            raise ValueError("a parallel attention/MLP layer needs SharedInputNorm as its pre_mlp_layernorm")
        if self.recompute_input_layernorm:
            raise ValueError("the parallel block cannot recompute its input norm (the MLP reads its output)")
        self.input_layernorm.register_forward_hook(self.pre_mlp_layernorm.keep)
