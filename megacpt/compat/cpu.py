"""Let Megatron-core 0.16 train, pipeline, shard its optimizer and checkpoint with no GPU.

Megatron-core assumes CUDA in a handful of places that have nothing to do with the maths: it
allocates buffers on ``torch.cuda.current_device()``, builds scale tensors with ``device='cuda'``,
synchronises CUDA after pipeline sends, keeps its dropout RNG states in the CUDA generator, and
checks ``tensor.type() == 'torch.cuda.FloatTensor'``. On a machine without a GPU each of these
raises. This module patches exactly those places so that the same code runs on gloo, which is how
megacpt tests 3D parallelism, the distributed optimizer and checkpoint resharding on every commit
on a CPU machine.

``apply()`` does nothing when CUDA is available: the layer must never change behaviour on a GPU.
Every patch is listed in ``PATCHES`` with the reason it exists; ``applied()`` tells which ran.

Patches, one by one:

1. ``cuda_namespace`` - in every loaded ``megatron.core`` module the global name ``torch`` is
   replaced by a thin proxy that forwards everything to ``torch`` except
   ``torch.cuda`` (``current_device()`` answers ``cpu``, ``synchronize()`` is a no-op, the RNG
   functions act on the CPU generator) and tensor factories, where ``device='cuda'`` becomes the
   CPU. Scoped to those modules: ``torch`` itself and every other library are untouched.
2. ``tensor_cuda`` - ``Tensor.cuda()`` returns the tensor itself. On a CPU-only build it can only
   raise, so no working program changes; the distributed optimizer's gather and the RoPE helper
   call it.
3. ``rng_tracker`` - ``CudaRNGStatesTracker.add`` and ``.fork`` keep named CPU generator states
   (the same bookkeeping, on the generator that CPU dropout actually draws from).
4. ``float_tensor_type_checks`` - the checks for ``'torch.cuda.FloatTensor'`` in the distributed
   optimizer, the fp16/bf16 optimizer and fp32 gradient clipping accept ``'torch.FloatTensor'``.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch

_CPU = torch.device("cpu")
_FACTORIES = ("tensor", "zeros", "ones", "empty", "full", "arange", "zeros_like", "empty_like", "ones_like")

# Importing these loads every Megatron module that training, the schedules, the optimizers and
# dist_checkpointing use; patch 1 then covers each loaded ``megatron.core`` module.
_ENTRY_MODULES = (
    "megatron.core.models.gpt.gpt_model",
    "megatron.core.models.gpt.gpt_layer_specs",
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.distributed",
    "megatron.core.optimizer",
    "megatron.core.dist_checkpointing",
    "megatron.core.dist_checkpointing.strategies.torch",
    "megatron.core.dist_checkpointing.strategies.fully_parallel",
    "megatron.core.datasets.gpt_dataset",
)

_applied: list[str] = []


def _cpu_device(device: Any) -> Any:
    if device == "cuda" or (isinstance(device, str) and device.startswith("cuda")):
        return _CPU
    if isinstance(device, torch.device) and device.type == "cuda":
        return _CPU
    return device


def _redirecting_factory(factory: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def make(*args: Any, **kwargs: Any) -> torch.Tensor:
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return factory(*args, **kwargs)

    return make


class _NullStream:
    """Stands in for ``torch.cuda.Stream``/``Event``: CPU work is already ordered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _NullStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def wait_stream(self, *args: Any) -> None:
        pass

    def wait_event(self, *args: Any) -> None:
        pass

    def record_event(self, *args: Any) -> _NullStream:
        return self

    def record(self, *args: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait(self, *args: Any) -> None:
        pass


def _make_cuda_namespace() -> types.SimpleNamespace:
    """``torch.cuda`` as Megatron uses it, answered by the CPU."""
    real = torch.cuda
    ns = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})
    ns.current_device = lambda: _CPU
    ns.synchronize = lambda *a, **k: None
    ns.Stream = _NullStream
    ns.Event = _NullStream
    ns.current_stream = lambda *a, **k: _NullStream()
    ns.stream = lambda *a, **k: contextlib.nullcontext()
    ns.get_rng_state = lambda *a, **k: torch.get_rng_state()
    ns.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    ns.manual_seed = lambda seed: torch.manual_seed(seed)
    ns.manual_seed_all = lambda seed: torch.manual_seed(seed)
    ns.memory_allocated = lambda *a, **k: 0
    ns.max_memory_allocated = lambda *a, **k: 0
    ns.empty_cache = lambda: None
    ns.device_count = lambda: 0
    ns.is_available = lambda: False
    return ns


class _TorchProxy(types.ModuleType):
    """``torch`` for one Megatron module: the real thing except ``cuda`` and device='cuda'."""

    def __init__(self, cuda_ns: types.SimpleNamespace) -> None:
        super().__init__("torch")
        self.cuda = cuda_ns
        for name in _FACTORIES:
            setattr(self, name, _redirecting_factory(getattr(torch, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def _patch_cuda_namespace() -> None:
    for name in _ENTRY_MODULES:
        importlib.import_module(name)
    proxy = _TorchProxy(_make_cuda_namespace())
    for name, module in list(sys.modules.items()):
        if name.startswith("megatron.core") and getattr(module, "torch", None) is torch:
            module.torch = proxy  # type: ignore[attr-defined]


def _patch_tensor_cuda() -> None:
    def cuda(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self

    torch.Tensor.cuda = cuda  # type: ignore[method-assign,assignment]


def _patch_rng_tracker() -> None:
    from megatron.core.tensor_parallel import random as mrandom

    tracker_cls = mrandom.CudaRNGStatesTracker

    def add(self: Any, name: str, seed: int) -> None:
        self._is_initialized = True
        if seed in self.seeds_:
            raise Exception(f"seed {seed} already exists")
        self.seeds_.add(seed)
        if name in self.states_:
            raise Exception(f"rng state {name} already exists")
        orig = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(orig)

    @contextlib.contextmanager
    def fork(self: Any, name: str = mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME) -> Iterator[None]:
        if name not in self.states_:
            raise Exception(f"rng state {name} is not added")
        orig_state = torch.get_rng_state()
        orig_name = self._current_state_name
        if orig_name != "default-rng":
            self.states_[orig_name] = orig_state
        torch.set_rng_state(self.states_[name])
        self._current_state_name = name
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            if orig_name != "default-rng":
                orig_state = self.states_[orig_name]
            torch.set_rng_state(orig_state)
            self._current_state_name = orig_name

    tracker_cls.add = add
    tracker_cls.fork = fork
    mrandom._get_cuda_rng_state = lambda *a, **k: torch.get_rng_state()
    mrandom._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)


def _patch_float_tensor_type_checks() -> None:
    """Make ``tensor.type()`` report a CUDA float tensor for CPU float tensors inside the checks.

    The three checks (distributed optimizer param groups, Float16 optimizer param groups, fp32
    grad clipping) only ask "is this an fp32 tensor?"; on CPU the answer is spelled
    ``'torch.FloatTensor'``. Each checking function runs with ``Tensor.type`` answering the CUDA
    spelling for fp32 tensors, and only while it runs.
    """
    from megatron.core.optimizer import clip_grads, distrib_optimizer, optimizer

    real_type = torch.Tensor.type

    def cuda_spelled_type(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        result = real_type(self, *args, **kwargs)
        if not args and not kwargs and result == "torch.FloatTensor":
            return "torch.cuda.FloatTensor"
        if not args and not kwargs and result in ("torch.HalfTensor", "torch.BFloat16Tensor"):
            return result.replace("torch.", "torch.cuda.")
        return result

    def during(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            saved = torch.Tensor.type
            torch.Tensor.type = cuda_spelled_type  # type: ignore[method-assign,assignment]
            try:
                return fn(*args, **kwargs)
            finally:
                torch.Tensor.type = saved  # type: ignore[method-assign]

        wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapped

    dopt = distrib_optimizer.DistributedOptimizer
    build = dopt.__dict__["_build_model_and_main_param_groups"].__func__
    dopt._build_model_and_main_param_groups = classmethod(during(build))
    f16 = optimizer.Float16OptimizerWithFloat16Params
    f16.__init__ = during(f16.__init__)
    clip_grads.clip_grad_by_total_norm_fp32 = during(clip_grads.clip_grad_by_total_norm_fp32)
    optimizer.clip_grad_by_total_norm_fp32 = clip_grads.clip_grad_by_total_norm_fp32


PATCHES: dict[str, Callable[[], None]] = {
    "cuda_namespace": _patch_cuda_namespace,
    "tensor_cuda": _patch_tensor_cuda,
    "rng_tracker": _patch_rng_tracker,
    "float_tensor_type_checks": _patch_float_tensor_type_checks,
}


def needed() -> bool:
    """True when no CUDA device is usable: the only case in which patches are applied."""
    return not torch.cuda.is_available()


def apply() -> list[str]:
    """Apply every patch once, if and only if no GPU is present; return the names applied."""
    if not needed() or _applied:
        return list(_applied)
    for name, patch in PATCHES.items():
        patch()
        _applied.append(name)
    return list(_applied)


def applied() -> list[str]:
    """Names of the patches applied in this process."""
    return list(_applied)
