"""Fixes for Megatron-core's distributed-optimizer checkpoints when neither TE nor apex is installed.

Without Transformer Engine or apex, Megatron-core falls back to ``torch.optim.Adam``, and its
distributed-optimizer checkpoint code mishandles torch Adam's per-parameter ``step`` state. These
bite on a GPU as much as on a CPU, so unlike ``cpu_compat`` they apply whenever the fallback is in
use. ``apply()`` installs the one patch; the trainer's checkpoint code calls the two helpers.

1. ``materialise_adam_state`` - torch Adam creates its state at the first step, but saving reads
   ``step`` from it: a save before the first step, or a load into a fresh optimizer, fails.
2. ``unshare_step_tensors`` - a load restores one ``step`` tensor shared by every parameter, which
   Adam then increments once per parameter per step, corrupting bias correction after a resume.
3. patch ``skip_step_in_reshardable_load`` - loading the ``fully_reshardable`` format copies every
   state key, ``step`` included, from a source that deliberately omits ``step`` (``KeyError``).
4. patch ``state_dict_without_parameters`` - a rank whose stage trains none of its parameters (a
   frozen pipeline stage) holds an empty Adam, and saving asserts that it found exactly one step.

``param_range_start`` reads where a parameter starts in the distributed optimizer's flat buffer
(a private method of ``DistributedOptimizer``), for freezing by vocabulary row.
"""

from __future__ import annotations

from typing import Any

import torch

_applied = False


def _torch_optimizers(optimizer: Any) -> list[torch.optim.Optimizer]:
    chained = getattr(optimizer, "chained_optimizers", None) or [optimizer]
    return [o.optimizer for o in chained if getattr(o, "optimizer", None) is not None]


def materialise_adam_state(optimizer: Any) -> None:
    """Create torch Adam's per-parameter state where it does not exist yet.

    torch Adam creates ``step``/``exp_avg``/``exp_avg_sq`` lazily at its first step, but Megatron's
    distributed-optimizer checkpoint code (without TE or apex) reads ``step`` from that state, so a
    save before the first step or a load into a fresh optimizer fails. The state made here is
    exactly what Adam would create (zero moments, step 0), so training is unchanged.
    """
    for opt in _torch_optimizers(optimizer):
        for group in opt.param_groups:
            for param in group["params"]:
                state = opt.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def unshare_step_tensors(optimizer: Any) -> None:
    """Give every parameter its own Adam ``step`` tensor after a load.

    Megatron's distributed optimizer (without TE or apex) restores one ``step`` tensor shared by
    all parameters; Adam increments it in place once per parameter, which would corrupt the bias
    correction of every step after a resume.
    """
    for opt in _torch_optimizers(optimizer):
        for state in opt.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].clone()


def fallback_optimizer_in_use() -> bool:
    """True when Megatron-core uses torch's Adam (neither TE nor apex importable)."""
    from megatron.core.optimizer import distrib_optimizer

    return not distrib_optimizer.HAVE_APEX_OR_TE


def apply() -> None:
    """Install the ``fully_reshardable`` load fix once, when the torch Adam fallback is in use."""
    global _applied
    if _applied or not fallback_optimizer_in_use():
        return
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    original = DistributedOptimizer._set_main_param_and_optimizer_states

    def set_states_without_step(self: Any, model_param: torch.nn.Parameter, tensors: dict) -> None:
        if "step" in tensors or self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            return original(self, model_param, tensors)
        group_index, group_order = self.model_param_group_index_map[model_param]
        main_param = self.optimizer.param_groups[group_index]["params"][group_order]
        main_param.detach().copy_(tensors["param"])
        for key, value in self.optimizer.state[main_param].items():
            if key != "step":
                value.copy_(tensors[key])

    DistributedOptimizer._set_main_param_and_optimizer_states = set_states_without_step

    original_state_dict = DistributedOptimizer.state_dict

    def state_dict_without_parameters(self: Any) -> dict:
        if self.optimizer.state:
            return original_state_dict(self)
        inner = self.optimizer.state_dict()
        state: dict[str, Any] = {"optimizer": {k: v for k, v in inner.items() if k != "state"}}
        for group in state["optimizer"]["param_groups"]:
            del group["params"]
            group["step"] = 0
        if self.grad_scaler:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    DistributedOptimizer.state_dict = state_dict_without_parameters
    _applied = True


def param_range_start(optimizer: Any, param: torch.nn.Parameter) -> int:
    """Where ``param`` starts in the flattened buffer of a ``DistributedOptimizer``."""
    return optimizer._get_model_param_range_map(param)["param"].start
