"""A PyTorch RMSNorm/LayerNorm that works with sequence parallelism (the local layer spec's norm).

Megatron-core's ``WrappedTorchNorm`` refuses sequence parallelism, and its fused norms need apex
or Transformer Engine. With sequence parallelism a norm sees only its rank's slice of the
sequence, so its weight gradient is partial: marking the parameters ``sequence_parallel`` makes
``finalize_model_grads`` all-reduce them across the tensor-parallel group, exactly as Megatron
does for its fused norms. The module returned is a plain ``torch.nn.RMSNorm``/``LayerNorm``, so
parameter names and checkpoints are the same as with ``WrappedTorchNorm``.
"""

from __future__ import annotations

import torch
from megatron.core.transformer import TransformerConfig


class SequenceParallelTorchNorm:
    """Factory with the signature Megatron's layer specs expect for a norm module."""

    def __new__(  # type: ignore[misc]
        cls, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **_unused: object
    ) -> torch.nn.Module:
        if config.normalization == "RMSNorm":
            norm: torch.nn.Module = torch.nn.RMSNorm(hidden_size, eps=eps, dtype=config.params_dtype)
        elif config.normalization == "LayerNorm":
            norm = torch.nn.LayerNorm(hidden_size, eps=eps, dtype=config.params_dtype)
        else:
            raise ValueError(f"unsupported normalization {config.normalization!r}")
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel  # type: ignore[attr-defined]
        return norm
