"""Freeze what a stage does not train, so that it stays bit-identical, at any TP/PP/DP layout.

Two mechanisms:

- Whole parameters (frozen layers, norms, an embedding or output layer trained not at all) get
  ``requires_grad = False`` before Megatron DDP and the optimizer are built, so DDP allocates no
  gradient buffer for them, the optimizer never sees them, and autograd does no weight-gradient
  work for them.
- Vocabulary rows (train only the new rows of the embedding, say) cannot be frozen that way: the
  matrix trains. The frozen rows of this TP rank's shard are remembered at the stage start; their
  gradient is zeroed in ``main_grad`` after the backward pass (where Megatron accumulates it, also
  with fused gradient accumulation), and after each optimizer step their values are written back
  into the model parameter and into the optimizer's main copy, and their Adam moments are zeroed —
  weight decay and moments from earlier steps cannot move them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from megatron.core import parallel_state
from megatron.core.optimizer import ChainedOptimizer, DistributedOptimizer, Float16OptimizerWithFloat16Params
from megatron.core.optimizer.optimizer import FP32Optimizer

from megacpt.compat import optimizer as optimizer_compat
from megacpt.config.schema import TrainableConfig
from megacpt.model.lora import ADAPTERS

INPUT_EMBEDDING = "embedding.word_embeddings.weight"
OUTPUT_LAYER = "output_layer.weight"
OUTPUT_BIAS = "output_layer.bias"  # Phi's LM-head bias: one entry per vocabulary row


@dataclass
class FrozenRows:
    """The frozen rows of one vocabulary-parallel parameter shard, as contiguous local row ranges."""

    param: torch.nn.Parameter
    ranges: list[tuple[int, int]]  # [first, last) local rows
    values: list[torch.Tensor] = field(default_factory=list)  # at the stage start: [rows, hidden] per range

    @property
    def num_rows(self) -> int:
        return sum(hi - lo for lo, hi in self.ranges)


@dataclass
class FreezePlan:
    """What one rank freezes in this stage, and the parameter counts for the log."""

    frozen_rows: list[FrozenRows] = field(default_factory=list)
    trainable_numel: int = 0
    frozen_numel: int = 0

    def snapshot(self) -> None:
        """Remember the frozen rows' values: call once the stage's starting weights are loaded."""
        for fr in self.frozen_rows:
            fr.values = [fr.param.detach()[lo:hi].clone() for lo, hi in fr.ranges]

    def mask_gradients(self) -> None:
        """Zero the gradients of frozen rows (after backward and gradient reduction, before the step)."""
        for fr in self.frozen_rows:
            grad = getattr(fr.param, "main_grad", None)
            if grad is None:
                grad = fr.param.grad
            if grad is not None:
                for lo, hi in fr.ranges:
                    grad[lo:hi] = 0

    @torch.no_grad()
    def restore(self, optimizer: Any) -> None:
        """Put frozen rows back in the parameters and the optimizer's main copies; zero their moments."""
        for fr in self.frozen_rows:
            hidden = fr.param[0].numel()  # elements per row (1 for the LM-head bias)
            copies = _main_copies(optimizer, fr.param)
            for (lo, hi), value in zip(fr.ranges, fr.values):
                fr.param.data[lo:hi] = value
                flat_value = value.view(-1)
                for main, state, start in copies:
                    # The main copy holds flat elements [start, start + numel) of the parameter.
                    first, last = max(start, lo * hidden), min(start + main.numel(), hi * hidden)
                    if first >= last:
                        continue
                    span = slice(first - start, last - start)
                    main.view(-1)[span] = flat_value[first - lo * hidden : last - lo * hidden].to(main.dtype)
                    for key in ("exp_avg", "exp_avg_sq"):
                        if key in state:
                            state[key].view(-1)[span] = 0


def _sub_optimizers(optimizer: Any) -> list[Any]:
    return list(optimizer.chained_optimizers) if isinstance(optimizer, ChainedOptimizer) else [optimizer]


def _main_copies(optimizer: Any, param: torch.nn.Parameter) -> list[tuple[torch.Tensor, dict, int]]:
    """(main parameter tensor, its Adam state, its offset in the flattened model parameter)."""
    found = []
    for opt in _sub_optimizers(optimizer):
        if isinstance(opt, DistributedOptimizer):
            if param not in opt.model_param_group_index_map:
                continue
            group, order = opt.model_param_group_index_map[param]
            main = opt.optimizer.param_groups[group]["params"][order]
            start = optimizer_compat.param_range_start(opt, param)
            found.append((main, opt.optimizer.state[main], start))
        elif isinstance(opt, Float16OptimizerWithFloat16Params):
            for f16_group, f32_group in zip(opt.float16_groups, opt.fp32_from_float16_groups):
                for f16, f32 in zip(f16_group, f32_group):
                    if f16 is param:
                        found.append((f32, opt.optimizer.state[f32], 0))
            for group in opt.fp32_from_fp32_groups:
                if any(p is param for p in group):
                    found.append((param, opt.optimizer.state[param], 0))
        elif isinstance(opt, FP32Optimizer) and any(
            p is param for g in opt.optimizer.param_groups for p in g["params"]
        ):
            found.append((param, opt.optimizer.state[param], 0))
    return found


def _layer_trains(global_index: int, layers: Any) -> bool:
    if layers == "all":
        return True
    if layers == "none":
        return False
    if layers == "even":
        return global_index % 2 == 0
    if layers == "odd":
        return global_index % 2 == 1
    return global_index in layers


def _is_norm(name: str) -> bool:
    return "layernorm" in name or "layer_norm" in name


def _row_selection(name: str, train: TrainableConfig, tied: bool) -> str:
    """'none' / 'new' / 'old' / 'all' for a vocabulary-parallel parameter."""
    if tied:
        chosen = {train.input_embeddings, train.output_layer} - {"none"}
        if not chosen:
            return "none"
        return "all" if "all" in chosen or chosen == {"new", "old"} else chosen.pop()
    return train.input_embeddings if name == INPUT_EMBEDDING else train.output_layer  # head and its bias


def _frozen_rows(
    param: torch.nn.Parameter, selection: str, vocab_size: int, old_vocab_size: int
) -> FrozenRows:
    """Rows of this TP shard outside the trained id range (padding rows included)."""
    per_rank = param.shape[0]
    first = parallel_state.get_tensor_model_parallel_rank() * per_rank
    trained_ids = (old_vocab_size, vocab_size) if selection == "new" else (0, old_vocab_size)
    frozen_ids = [(0, trained_ids[0]), (trained_ids[1], first + per_rank)]
    ranges = []
    for lo, hi in frozen_ids:
        lo, hi = max(lo, first) - first, min(hi, first + per_rank) - first
        if lo < hi:
            ranges.append((lo, hi))
    return FrozenRows(param=param, ranges=ranges)


def apply_trainable(
    models: list[torch.nn.Module],
    train: TrainableConfig,
    *,
    vocab_size: int,
    old_vocab_size: int | None,
    tied_embeddings: bool,
) -> FreezePlan:
    """Set ``requires_grad`` on this rank's GPTModel chunks (before DDP) and plan row freezing."""
    plan = FreezePlan()
    for model in models:
        for name, param in model.named_parameters():
            rows: FrozenRows | None = None
            if name in (INPUT_EMBEDDING, OUTPUT_LAYER, OUTPUT_BIAS):
                # A tied model's head bias is not shared: it trains with the output rows.
                selection = _row_selection(name, train, tied_embeddings and name != OUTPUT_BIAS)
                param.requires_grad = selection != "none"
                if selection in ("new", "old"):
                    assert old_vocab_size is not None
                    rows = _frozen_rows(param, selection, vocab_size, old_vocab_size)
                    plan.frozen_rows.append(rows)
            elif f".{ADAPTERS}." in name:  # LoRA adapters exist only in the stage that trains them
                param.requires_grad = True
            elif name.startswith("decoder.layers."):
                decoder: Any = model.decoder
                layer = decoder.layers[int(name.split(".")[2])]
                param.requires_grad = _layer_trains(layer.layer_number - 1, train.layers) or (
                    train.norms and _is_norm(name)
                )
            elif name.startswith("decoder.final_layernorm"):
                param.requires_grad = train.layers == "all" or train.norms
            else:
                raise ValueError(f"parameter {name} belongs to no trainable group")
            frozen = 0 if param.requires_grad else param.numel()
            if rows is not None:
                frozen = rows.num_rows * param[0].numel()
            plan.frozen_numel += frozen
            plan.trainable_numel += param.numel() - frozen
    return plan
