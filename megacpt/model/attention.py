"""Core attention for the local (non-Transformer-Engine) layer spec, on PyTorch's fused SDPA.

Megatron-core's ``DotProductAttention`` materialises the ``[b, heads, s, s]`` scores, builds a
causal mask every call, repeats the key/value groups for GQA and runs softmax, dropout and two
batched matmuls as separate kernels. On CPU that made megacpt's SmolLM2 step slower than a plain
Hugging Face step (``bench/results/real_step.md``). ``torch.nn.functional.scaled_dot_product_attention``
(PyTorch's flash kernel on CPU, flash or cuDNN on GPU) computes the same function without the
``s x s`` tensors and reads grouped keys directly (``enable_gqa``).

The module subclasses ``DotProductAttention``: same constructor, parameters and checkpoint
layout. What SDPA cannot express exactly (an explicit mask, an attention bias, packed sequences,
sliding windows, a softmax offset, causal attention with ``sq != sk``) goes to Megatron's own
forward, so the function computed never changes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SDPADotProductAttention(DotProductAttention):
    """``DotProductAttention`` whose causal, unmasked case runs PyTorch's fused SDPA."""

    def _sdpa_applies(
        self, query: torch.Tensor, key: torch.Tensor, attention_mask: Any, extra: tuple[Any, ...]
    ) -> bool:
        return (
            attention_mask is None
            and all(arg is None for arg in extra)
            and self.attn_mask_type == AttnMaskType.causal
            and self.softmax_offset is None
            and self.scale_mask_softmax.window_size is None
            and query.shape[0] == key.shape[0]
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: Any = None,
    ) -> torch.Tensor:
        """``[sq, b, heads, dim]`` query, ``[sk, b, groups, dim]`` key/value -> ``[sq, b, heads x dim]``."""
        if not self._sdpa_applies(query, key, attention_mask, (attention_bias, packed_seq_params)):
            return super().forward(
                query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params
            )
        sq, b = query.shape[:2]
        dropout = self.attention_dropout.p if self.training else 0.0
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, dim]
        # Megatron's rule: without sequence parallelism, dropout draws from the tensor-parallel RNG.
        tp_rng = dropout and not self.config.sequence_parallel
        with tensor_parallel.get_cuda_rng_tracker().fork() if tp_rng else contextlib.nullcontext():
            out = self._sdpa(q, k, v, dropout)
        return out.permute(2, 0, 1, 3).reshape(sq, b, self.hidden_size_per_partition)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            dropout_p=dropout,
            is_causal=True,
            scale=self.softmax_scale
            * (self.layer_number if self.config.apply_query_key_layer_scaling else 1),
            enable_gqa=k.shape[1] != q.shape[1],
        )
