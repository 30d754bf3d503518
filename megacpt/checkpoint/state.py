"""Training checkpoints on Megatron-core ``dist_checkpointing``: save, resume, initialise from weights.

Layout of a checkpoint root::

    <root>/iter_0000100/        one dist_checkpointing (torch_dist) checkpoint
        megacpt.json            step, consumed samples, true vocabulary size, data fingerprint
        rng/rank_00000.pt       each rank's RNG states (restored only at the same layout)
    <root>/latest               the name of the newest complete checkpoint

A checkpoint is written under ``iter_N.tmp`` and renamed only once every rank has finished, and
``latest`` is replaced atomically after that, so a run killed while saving leaves the previous
checkpoint as the latest. The distributed optimizer is saved in its ``fully_reshardable`` format so
that a checkpoint loads at any TP/PP/DP layout. Resuming (model, optimizer, scheduler, step, RNG) and
initialising from pretrained weights (model only) are separate functions.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing import ShardedTensor
from megatron.core.dist_checkpointing.mapping import ShardedTensorFactory

from megacpt.atomic import write_atomic
from megacpt.checkpoint.meta import (
    HF_SUBDIR,
    LATEST,
    META,
    check_merged,
    checkpoint_name,
    read_meta,
    resolve,
    verify_files,
)
from megacpt.compat import optimizer as optimizer_compat
from megacpt.errors import UserError
from megacpt.model.lora import ADAPTERS

_OPTIMIZER_FORMAT = {"distrib_optim_sharding_type": "fully_reshardable"}
VOCAB_PARALLEL_KEYS = ("embedding.word_embeddings.weight", "output_layer.weight", "output_layer.bias")


def _unwrap(model: torch.nn.Module) -> Any:
    """The GPTModel inside a DDP wrapper (whose own state-dict keys would gain a ``module.``)."""
    return getattr(model, "module", model)


def _model_state(models: list[torch.nn.Module]) -> dict[str, Any]:
    if len(models) == 1:
        return {"model": _unwrap(models[0]).sharded_state_dict()}
    return {f"model{i}": _unwrap(m).sharded_state_dict() for i, m in enumerate(models)}


def _per_layer(value: Any) -> Any:
    """A stacked-layer ShardedTensor (layer axis prepended) as one tensor of its layer."""
    if isinstance(value, dict):
        return {k: _per_layer(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_per_layer(v) for v in value]
    if isinstance(value, ShardedTensor) and value.prepend_axis_num == 1:
        return dataclasses.replace(
            value,
            key=f"{value.key}.layer{value.global_offset[0]}",
            global_shape=value.global_shape[1:],
            global_offset=value.global_offset[1:],
            axis_fragmentations=value.axis_fragmentations[1:],
            prepend_axis_num=0,
        )
    if isinstance(value, ShardedTensorFactory):
        build = value.build_fn
        return dataclasses.replace(value, build_fn=lambda *args, build=build: _per_layer(build(*args)))
    return value


def _optimizer_view(model_state: dict[str, Any]) -> dict[str, Any]:
    """The model's sharded state keyed per transformer layer, to key the optimizer's state by.

    Megatron stacks all layers of a parameter under one key with a layer axis, and a checkpoint
    must cover each key's whole shape. A stage training some layers only (RedWhale's odd, then
    even layers) has optimizer state for those layers alone, so optimizer state is keyed per layer
    (``optimizer.state.<name>.<param key>.layer<N>``); the model weights keep Megatron's keys.
    """
    return _per_layer(model_state)


def _layout() -> dict[str, int]:
    return {
        "world": dist.get_world_size(),
        "tp": parallel_state.get_tensor_model_parallel_world_size(),
        "pp": parallel_state.get_pipeline_model_parallel_world_size(),
    }


def _rng_state() -> dict[str, Any]:
    """Every RNG's state as plain data and tensors, so that it loads with ``weights_only=True``."""
    version, python_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "layout": _layout(),
        "python": [version, list(python_state), gauss],
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }


def _restore_rng(path: Path) -> bool:
    file = path / "rng" / f"rank_{dist.get_rank():05d}.pt"
    if not file.is_file():
        return False
    try:
        state = torch.load(file, weights_only=True)  # a checkpoint is data: nothing in it may run code
    except pickle.UnpicklingError:
        if dist.get_rank() == 0:
            print(
                f"[megacpt] {file} is not plain data (an older format): RNG states not restored", flush=True
            )
        return False
    if state["layout"] != _layout():
        return False
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])
    return True


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    models: list[torch.nn.Module],
    optimizer: Any,
    scheduler: Any,
    meta: dict[str, Any],
    keep_last: int | None = None,
    side_files: Path | None = None,
    weights_only: bool = False,
) -> Path:
    """Save model, optimizer, scheduler and RNG at ``step``; collective over all ranks. ``side_files``
    (the tokenizer and generation config, ``hf/`` of the checkpoint the run started from) are copied
    in, so that every checkpoint exports to a complete Hugging Face model. ``weights_only`` (a LoRA
    stage's end, whose adapters are merged into the weights) saves no optimizer or scheduler: what
    follows it starts from the weights."""
    meta = dict(meta, weights_only=True) if weights_only else meta
    root = Path(root)
    final = root / checkpoint_name(step)
    tmp = root / (checkpoint_name(step) + ".tmp")
    rank = dist.get_rank()
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist.barrier()
    try:
        optimizer_compat.materialise_adam_state(optimizer)
        state = _model_state(models)
        if not weights_only:
            state["optimizer"] = optimizer.sharded_state_dict(
                _optimizer_view(state), metadata=_OPTIMIZER_FORMAT
            )
            state["scheduler"] = scheduler.state_dict()
        state["megacpt"] = dict(meta, step=step)
        dist_checkpointing.save(state, str(tmp))
        (tmp / "rng").mkdir(exist_ok=True)
        torch.save(_rng_state(), tmp / "rng" / f"rank_{rank:05d}.pt")
        dist.barrier()
        if rank == 0:
            if side_files is not None and side_files.is_dir():
                shutil.copytree(side_files, tmp / HF_SUBDIR)
            (tmp / META).write_text(json.dumps(dict(meta, step=step), indent=2))
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written iter_N.tmp behind
        if _no_space_left(err):
            raise UserError(
                f"no space left on device while saving checkpoint {final}: free space and rerun; "
                "training resumes from the latest complete checkpoint"
            ) from err
        raise
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_atomic(root / LATEST, final.name)
        if keep_last:
            _prune(root, keep_last)
    dist.barrier()
    return final


def _no_space_left(err: BaseException | None) -> bool:
    """Whether ``err`` or an error it wraps is a full disk (the checkpoint writer re-raises its
    workers' errors wrapped, sometimes only as text)."""
    while err is not None:
        if (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _prune(root: Path, keep_last: int) -> None:
    done = sorted(p for p in root.glob("iter_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[:-keep_last]:
        shutil.rmtree(old)


def load_checkpoint(
    path: str | os.PathLike,
    models: list[torch.nn.Module],
    optimizer: Any,
    scheduler: Any,
) -> dict[str, Any]:
    """Resume: restore model, optimizer, scheduler and (at the same layout) RNG; return the metadata."""
    path = Path(path)
    if read_meta(path).get("weights_only"):
        raise UserError(
            f"{path} holds weights only (a LoRA stage's end): start from it with checkpoint.pretrained"
        )
    verify_files(path)
    optimizer_compat.materialise_adam_state(optimizer)
    state = _model_state(models)
    if _take_repadded(path, _model_state(models)):
        raise UserError(
            f"cannot resume {path} at this tensor-parallel size: it pads the vocabulary to another size, "
            "so the optimizer state does not fit; start a new run from it with checkpoint.pretrained instead"
        )
    view = _optimizer_view(state)
    state["optimizer"] = optimizer.sharded_state_dict(view, is_loading=True, metadata=_OPTIMIZER_FORMAT)
    loaded = dist_checkpointing.load(state, str(path))
    _load_models(models, loaded)
    optimizer.load_state_dict(loaded["optimizer"])
    optimizer_compat.unshare_step_tensors(optimizer)
    scheduler.num_steps = 0  # Megatron's load_state_dict adds the saved count to the current one
    scheduler.load_state_dict(loaded["scheduler"])
    _restore_rng(path)
    return loaded["megacpt"]


def load_optimizer_state(path: str | os.PathLike, models: list[torch.nn.Module], optimizer: Any) -> None:
    """Load only the optimizer state of a checkpoint (a stage that carries Adam's state over)."""
    verify_files(path)
    optimizer_compat.materialise_adam_state(optimizer)
    state = _model_state(models)
    view = _optimizer_view(state)
    request = {"optimizer": optimizer.sharded_state_dict(view, is_loading=True, metadata=_OPTIMIZER_FORMAT)}
    loaded = dist_checkpointing.load(request, str(path))
    optimizer.load_state_dict(loaded["optimizer"])
    optimizer_compat.unshare_step_tensors(optimizer)


def _load_models(models: list[torch.nn.Module], loaded: dict[str, Any]) -> None:
    keys = ["model"] if len(models) == 1 else [f"model{i}" for i in range(len(models))]
    for model, key in zip(models, keys):
        _unwrap(model).load_state_dict(loaded[key])


def _take_repadded(path: Path, state: dict[str, Any]) -> dict[tuple[str, str], ShardedTensor]:
    """Remove from ``state`` the vocabulary-parallel tensors whose padded row count differs in the checkpoint.

    The padded vocabulary is a multiple of ``make_vocab_size_divisible_by x TP``, so the same true
    vocabulary is padded differently at another TP; those tensors are loaded by ``_load_repadded``.
    """
    saved = dist_checkpointing.load_tensors_metadata(str(path))
    taken = {}
    for chunk_key, chunk in state.items():
        for name, tensor in list(chunk.items()):
            if (
                not isinstance(tensor, ShardedTensor)
                or tensor.key not in VOCAB_PARALLEL_KEYS
                or tensor.key not in saved
            ):
                continue
            if saved[tensor.key].global_shape != tensor.global_shape:
                taken[(chunk_key, name)] = tensor
                del chunk[name]
    return taken


def _load_repadded(
    path: Path, taken: dict[tuple[str, str], ShardedTensor], loaded: dict[str, Any], vocab_size: int
) -> None:
    """Load the full saved tensor and keep this rank's rows of the true vocabulary (zeros in padding)."""
    saved = dist_checkpointing.load_tensors_metadata(str(path))
    for (chunk_key, name), tensor in taken.items():
        full = torch.empty(saved[tensor.key].global_shape, dtype=tensor.data.dtype)
        request = {tensor.key: ShardedTensor.from_rank_offsets(tensor.key, full, replica_id=dist.get_rank())}
        full = dist_checkpointing.load(request, str(path))[tensor.key]
        first = tensor.global_offset[0]
        rows = max(0, min(vocab_size, first + tensor.local_shape[0]) - first)
        local = torch.zeros(tensor.local_shape, dtype=tensor.data.dtype)
        local[:rows] = full[first : first + rows]
        loaded[chunk_key][name] = local


def load_pretrained(
    path: str | os.PathLike, models: list[torch.nn.Module], vocab_size: int
) -> dict[str, Any]:
    """Initialise model weights only from a checkpoint (a new run: no optimizer, step 0).

    ``path`` is a checkpoint directory, or a checkpoint root whose ``latest`` names one. Works
    across layouts, including one whose TP pads the vocabulary to another size.
    """
    path = resolve(path)
    meta = read_meta(path)
    verify_files(path)
    if meta.get("vocab_size") != vocab_size:
        raise UserError(
            f"checkpoint {path} has vocabulary size {meta.get('vocab_size')} but model.vocab_size is {vocab_size}"
        )
    check_merged(meta, path)
    state = _model_state(models)
    taken = _take_repadded(path, state)
    fresh = _take_adapters(state)
    loaded = dist_checkpointing.load(state, str(path))
    _load_repadded(path, taken, loaded, vocab_size)
    for (chunk_key, name), tensor in fresh.items():
        loaded[chunk_key][name] = tensor
    _load_models(models, loaded)
    return meta


def _take_adapters(state: dict[str, Any]) -> dict[tuple[str, str], torch.Tensor]:
    """Remove a LoRA stage's adapters from a load request on plain weights; they keep their
    initial values (returned, to load back as they are)."""
    taken = {}
    for chunk_key, chunk in state.items():
        for name in [n for n in chunk if f".{ADAPTERS}." in n]:
            taken[(chunk_key, name)] = chunk.pop(name).data
    return taken
