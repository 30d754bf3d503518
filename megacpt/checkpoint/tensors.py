"""Read and write megacpt's Megatron-core ``dist_checkpointing`` (torch_dist) directories without a model.

A converter knows every tensor's global shape, so it writes each one as a single full shard
(``ShardedTensor`` with the same keys and stacked-layer axis that ``GPTModel.sharded_state_dict``
uses); ``dist_checkpointing`` then reshards on load, so the checkpoint loads at any TP/PP. Tensors
may be declared by shape alone and made by a loader while writing (``streaming_save``), so a
conversion never holds the model. Reading goes through ``load_tensors_metadata`` and loads only
the keys asked for, so a caller that wants the embedding never reads the transformer body.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing import ShardedObject, ShardedTensor

from megacpt.atomic import write_atomic
from megacpt.checkpoint.meta import load_dcp_metadata, verify_files, write_meta
from megacpt.compat import cpu as cpu_compat
from megacpt.compat import dcp as dcp_compat
from megacpt.compat.streaming_save import Loader, StreamingSaveStrategy
from megacpt.errors import UserError
from megacpt.parallel.runtime import init_world_of_one


@contextmanager
def single_process_group() -> Iterator[None]:
    """A gloo world of one (``dist_checkpointing`` needs a process group), unless one exists."""
    cpu_compat.apply()  # no-op with a GPU; dist_checkpointing's writer syncs CUDA otherwise
    if dist.is_initialized():
        yield
        return
    init_world_of_one()
    try:
        yield
    finally:
        dist.destroy_process_group()


def full_tensor(key: str, tensor: torch.Tensor) -> ShardedTensor:
    """A tensor stored whole under ``key``."""
    return ShardedTensor.from_rank_offsets(key, tensor.contiguous(), replica_id=0)


def layer_tensor(key: str, tensor: torch.Tensor, layer: int, num_layers: int) -> ShardedTensor:
    """Layer ``layer``'s slice of a key stacked over layers (Megatron's layout for ``decoder.layers.*``)."""
    return ShardedTensor.from_rank_offsets(
        key, tensor.contiguous(), (0, layer, num_layers), replica_id=0, prepend_axis_num=1
    )


def layer_extra_state(key: str, layer: int, num_layers: int) -> ShardedObject:
    """An empty ``_extra_state`` entry, which ``GPTModel`` requests for every linear layer (FP8 metadata under TE)."""
    return ShardedObject(key, None, (num_layers,), (layer,), replica_id=0)


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Global shape of every tensor in a checkpoint, read from its metadata only."""
    verify_files(path)
    with single_process_group():
        meta = dist_checkpointing.load_tensors_metadata(str(path))
    return {k: tuple(v.global_shape) for k, v in meta.items() if isinstance(v, ShardedTensor)}


def read_tensors(
    path: str | os.PathLike, keys: list[str], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """The full (global) tensors ``keys`` of a checkpoint, reading nothing else."""
    verify_files(path)
    with single_process_group():
        meta = dist_checkpointing.load_tensors_metadata(str(path))
        missing = [k for k in keys if k not in meta]
        if missing:
            raise UserError(f"{path}: checkpoint has no tensor {missing[0]}")
        request = {}
        for key in keys:
            ref = meta[key]
            request[key] = full_tensor(key, torch.empty(ref.global_shape, dtype=dtype or ref.dtype))
        loaded = dist_checkpointing.load(request, str(path))
    return {k: loaded[k] for k in keys}


def declared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A shape-and-dtype-only stand-in (``meta`` device) for a tensor that a loader makes at write time."""
    return torch.empty(shape, dtype=dtype, device="meta")


def write_checkpoint(
    state: dict[str, ShardedTensor | ShardedObject],
    directory: Path,
    meta: dict[str, Any],
    loaders: dict[str, Loader] | None = None,
) -> None:
    """Write ``state`` as a torch_dist checkpoint into ``directory`` (already created) plus its metadata.

    ``loaders[k]`` makes the data of ``state[k]`` (declared over ``declared``) when the writer
    reaches it; each is called once and its result dropped once written.
    """
    shards = {}
    for name, load in (loaders or {}).items():
        sharded = state[name]
        if not isinstance(sharded, ShardedTensor):
            raise TypeError(f"{name}: only ShardedTensor entries can be loaded lazily")
        shards[(sharded.key, tuple(sharded.global_offset))] = load
    with single_process_group():
        dist_checkpointing.save(state, str(directory), sharded_strategy=StreamingSaveStrategy(shards))
    write_meta(directory, meta)


def replace_tensors(
    directory: Path,
    tensors: dict[str, torch.Tensor],
    file_name: str = "__resized_0.distcp",
    add: bool = False,
) -> None:
    """Swap whole tensors (any new shape) inside a copied torch_dist checkpoint, leaving every other byte.

    With ``add`` the keys must be new ones instead (an output layer given to a model that tied it).

    The new tensors go into one extra data file, written the way ``torch.distributed.checkpoint``'s
    ``FileSystemWriter`` writes tensor items (``torch.save`` at an offset); its ``.metadata`` is then
    rewritten so that each key names that file with one full chunk. Nothing else is read, so the
    transformer body of a large checkpoint never enters memory.
    """
    from torch.distributed.checkpoint.metadata import (
        ChunkStorageMetadata,
        MetadataIndex,
        TensorProperties,
        TensorStorageMetadata,
    )

    meta_file = directory / ".metadata"
    metadata = load_dcp_metadata(directory)
    storage = {i: info for i, info in metadata.storage_data.items() if i.fqn not in tensors}
    with open(directory / file_name, "wb") as data:
        for key, tensor in tensors.items():
            if (key in metadata.state_dict_metadata) == add:
                state = "already has" if add else "has no"
                raise UserError(f"{directory}: checkpoint {state} tensor {key}")
            offset = data.tell()
            if not tensor.is_contiguous() or tensor.untyped_storage().nbytes() != tensor.nbytes:
                tensor = tensor.contiguous().clone()  # torch.save writes a view's whole storage
            torch.save(tensor, data)
            zeros = torch.Size([0] * tensor.dim())
            storage[MetadataIndex(key, zeros)] = dcp_compat.storage_info(
                file_name, offset, data.tell() - offset
            )
            metadata.state_dict_metadata[key] = TensorStorageMetadata(
                properties=TensorProperties(dtype=tensor.dtype),
                size=tensor.shape,
                chunks=[ChunkStorageMetadata(offsets=zeros, sizes=tensor.shape)],
            )
    metadata.storage_data = storage
    write_atomic(meta_file, pickle.dumps(metadata))
