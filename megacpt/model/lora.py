"""Low-rank adapters (LoRA) on Megatron-core's tensor-parallel linear layers.

A LoRA stage adds ``y += alpha/rank * B(A(dropout(x)))`` to chosen linear layers of every
transformer layer and trains A and B instead of the layer's weight (Hu et al., 2021; RedWhale's
last stage). The adapters shard the way their base layer does, so TP2 computes what TP1 does:

- column-parallel base (``linear_qkv``, ``linear_fc1``; weight ``[out/tp, in]``): A ``[rank, in]``
  replicated, B ``[out/tp, rank]`` sharded by output rows, in the base's own row order (a gated
  ``linear_fc1`` keeps its gate/up halves per rank, and checkpoints split them as Megatron splits
  the weight, so a checkpoint loads at another TP);
- row-parallel base (``linear_proj``, ``linear_fc2``; weight ``[out, in/tp]``): A ``[rank, in/tp]``
  sharded by input columns, B ``[out, rank]`` replicated; the rank-sized partial sums are reduced
  across TP (reduce-scattered with sequence parallelism) as the base layer reduces its output.

Only rank-sized tensors cross TP ranks. A replicated adapter weight that sees a sequence shard
(sequence parallelism) is marked ``sequence_parallel`` so that Megatron all-reduces its gradient.
Adapters are initialised as peft does (A Kaiming-uniform, B zero: the model starts unchanged),
from a generator seeded per layer and target, so that every layout draws the same full matrices.
``merge_adapters`` folds ``W + alpha/rank * B @ A`` into the weights and removes the adapters:
what follows (the next stage, the HF export) sees a plain model.

Written here rather than with ``peft``: peft wraps ``torch.nn.Linear`` and knows nothing of
Megatron's sharded layers, their communication or ``dist_checkpointing``. Only the local layer spec
is supported (Transformer Engine fuses the input norm into ``linear_qkv``/``linear_fc1``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    gather_from_sequence_parallel_region,
    reduce_from_tensor_model_parallel_region,
    reduce_scatter_to_sequence_parallel_region,
)
from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
from megatron.core.transformer.utils import (
    ensure_metadata_has_dp_cp_group,
    make_sharded_tensors_for_checkpoint,
)

from megacpt.config.schema import LoraConfig, LoraTarget
from megacpt.errors import UserError

_SEQUENCE_PARALLEL = "sequence_parallel"  # Megatron all-reduces these parameters' gradients over TP
ADAPTERS = "lora"  # the attribute of a TransformerLayer that holds its adapters (and the key part)
_OWNERS = {
    "linear_qkv": "self_attention",
    "linear_proj": "self_attention",
    "linear_fc1": "mlp",
    "linear_fc2": "mlp",
}


class LinearAdapter(torch.nn.Module):
    """The low-rank update of one tensor-parallel linear layer, on this TP rank."""

    def __init__(
        self, base: torch.nn.Module, lora: LoraConfig, generator: torch.Generator, gated: bool
    ) -> None:
        super().__init__()
        if isinstance(base, ColumnParallelLinear):
            self.column = True
        elif isinstance(base, RowParallelLinear):
            self.column = False
        else:
            raise UserError(
                f"LoRA needs Megatron's local linear layers, got {type(base).__name__}: set "
                "model.transformer_impl: local for a LoRA stage"
            )
        self.scale = lora.alpha / lora.rank
        self.dropout = lora.dropout
        self.gated = gated
        self.sequence_parallel = bool(getattr(base, "sequence_parallel", False))
        self.tp_group = base.tp_group
        tp = parallel_state.get_tensor_model_parallel_world_size()
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
        out_local, in_local = base.weight.shape
        in_full = in_local if self.column else in_local * tp
        a_full = torch.empty(lora.rank, in_full)
        # peft's default: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)).
        bound = 1 / math.sqrt(in_full)
        a_full.uniform_(-bound, bound, generator=generator)
        a = a_full if self.column else a_full[:, tp_rank * in_local : (tp_rank + 1) * in_local]
        b = torch.zeros(out_local, lora.rank)
        dtype, device = base.weight.dtype, base.weight.device
        self.a = torch.nn.Parameter(a.to(dtype=dtype, device=device).contiguous())
        self.b = torch.nn.Parameter(b.to(dtype=dtype, device=device))
        # The sharded one carries Megatron's TP attributes; the replicated one is counted once by
        # the gradient norm and, when it sees a sequence shard, gets its gradient all-reduced.
        sharded, replicated = (self.b, self.a) if self.column else (self.a, self.b)
        set_tensor_model_parallel_attributes(sharded, True, 0 if self.column else 1, 1)
        setattr(replicated, _SEQUENCE_PARALLEL, self.sequence_parallel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The update to add to the base layer's output for its input ``x``."""
        if self.dropout and self.training:
            # A row adapter's input is this rank's slice of the channels: its own mask stream (the
            # model-parallel RNG); a column adapter's is whole on every TP rank: the same mask.
            with (
                tensor_parallel.get_cuda_rng_tracker().fork() if not self.column else contextlib.nullcontext()
            ):
                x = torch.nn.functional.dropout(x, self.dropout, True)
        down = torch.nn.functional.linear(x, self.a)
        if self.column:
            if self.sequence_parallel:
                down = gather_from_sequence_parallel_region(down, group=self.tp_group)
            else:
                down = copy_to_tensor_model_parallel_region(down, group=self.tp_group)
        elif self.sequence_parallel:
            down = reduce_scatter_to_sequence_parallel_region(down, group=self.tp_group)
        else:
            down = reduce_from_tensor_model_parallel_region(down, group=self.tp_group)
        return torch.nn.functional.linear(down, self.b) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """``alpha/rank * B @ A`` for this rank's shard of the base weight, in float32."""
        return (self.b.detach().float() @ self.a.detach().float()) * self.scale

    def sharded_state_dict(
        self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None
    ) -> dict[str, Any]:
        state = self.state_dict(prefix="", keep_vars=True)
        axis = {"b": 0} if self.column else {"a": 1}
        # Both groups, as Megatron's own layers pass them: with one given and not the other, every
        # data-parallel rank would claim to hold the main copy of each shard.
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        sharded = make_sharded_tensors_for_checkpoint(
            state, prefix, axis, sharded_offsets, tp_group=self.tp_group, dp_cp_group=metadata["dp_cp_group"]
        )
        if self.column and self.gated:
            sharded[f"{prefix}b"] = apply_swiglu_sharded_factory(sharded[f"{prefix}b"], sharded_offsets)
        return sharded


class LayerAdapters(torch.nn.Module):
    """The adapters of one transformer layer, by target name; checkpoints shard each one properly."""

    def __init__(self, adapters: dict[LoraTarget, LinearAdapter]) -> None:
        super().__init__()
        self.by_target = torch.nn.ModuleDict({str(name): adapter for name, adapter in adapters.items()})
        self.hooks: list[Any] = []

    def adapters(self) -> list[tuple[str, LinearAdapter]]:
        return [
            (name, adapter) for name, adapter in self.by_target.items() if isinstance(adapter, LinearAdapter)
        ]

    def sharded_state_dict(
        self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, adapter in self.adapters():
            out.update(adapter.sharded_state_dict(f"{prefix}by_target.{name}.", sharded_offsets, metadata))
        return out


def _base_linear(layer: Any, target: str) -> Any:
    return getattr(getattr(layer, _OWNERS[target]), target)


def _add_output(adapter: LinearAdapter) -> Any:
    def hook(_module: torch.nn.Module, args: tuple, output: tuple) -> tuple:
        out, bias = output
        return out + adapter(args[0]), bias

    return hook


def add_adapters(model: Any, lora: LoraConfig, seed: int) -> int:
    """Attach adapters to the chosen linear layers of every transformer layer of this model chunk,
    freeze nothing (``megacpt.training.freezing`` does); returns the number of adapter parameters here."""
    count = 0
    for layer in model.decoder.layers:
        adapters: dict[LoraTarget, LinearAdapter] = {}
        for index, target in enumerate(lora.targets):
            base = _base_linear(layer, target)
            # One stream per (global layer, target): every TP/PP layout draws the same full matrices.
            generator = torch.Generator().manual_seed(seed * 1_000_003 + layer.layer_number * 16 + index)
            gated = target == "linear_fc1" and layer.config.gated_linear_unit
            adapters[target] = LinearAdapter(base, lora, generator, gated)
        holder = LayerAdapters(adapters)
        setattr(layer, ADAPTERS, holder)
        for target, adapter in adapters.items():
            holder.hooks.append(_base_linear(layer, target).register_forward_hook(_add_output(adapter)))
            count += adapter.a.numel() + adapter.b.numel()
    return count


def has_adapters(model: Any) -> bool:
    return any(isinstance(getattr(layer, ADAPTERS, None), LayerAdapters) for layer in model.decoder.layers)


@torch.no_grad()
def merge_adapters(model: Any) -> None:
    """Fold every adapter into its base weight (``W += alpha/rank * B @ A``) and remove it."""
    for layer in model.decoder.layers:
        holder = getattr(layer, ADAPTERS, None)
        if not isinstance(holder, LayerAdapters):
            continue
        for target, adapter in holder.adapters():
            weight = _base_linear(layer, target).weight
            weight.copy_((weight.float() + adapter.delta_weight()).to(weight.dtype))
        for hook in holder.hooks:
            hook.remove()
        delattr(layer, ADAPTERS)
