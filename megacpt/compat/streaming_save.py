"""Write a ``dist_checkpointing`` (torch_dist) checkpoint whose tensors are produced one at a time.

A converter declares every tensor up front by shape and dtype only (``ShardedTensor`` over a
``meta`` tensor) and gives a loader per tensor; the data is made only when the writer reaches that
tensor and is dropped once written, so peak memory is a few tensors, not the model.

Megatron-core's own torch_dist strategy cannot do this: its ``FileSystemWriterAsync`` resolves
every tensor to CPU before writing (it stages for asynchronous saves). ``StreamingSaveStrategy``
keeps Megatron's translation of ``ShardedTensor``/``ShardedObject`` into torch's format and its
planner, and swaps only the writer for ``torch.distributed.checkpoint``'s synchronous
``FileSystemWriter`` (one file per key, see ``_FilePerKeyWriter``), which pulls items from the
planner one at a time. ``dist_checkpointing.save`` still writes ``common.pt`` and
``metadata.json``, so the result is an ordinary torch_dist checkpoint that
``dist_checkpointing.load`` reshards to any TP/PP.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from megatron.core.dist_checkpointing.strategies.torch import (
    MCoreSavePlanner,
    TorchDistSaveShardedStrategy,
    _replace_state_dict_keys_with_sharded_keys,
    mcore_to_pyt_state_dict,
)
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.filesystem import DEFAULT_SUFFIX
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner, WriteItem, WriteItemType
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

Loader = Callable[[], torch.Tensor]
# (checkpoint key, global offset of the shard): how a write item names one ShardedTensor.
ShardId = tuple[str, tuple[int, ...]]


class _LoadingPlanner(MCoreSavePlanner):
    """Megatron's save planner, producing the data of lazily declared shards on request."""

    def __init__(self, loaders: dict[ShardId, Loader]):
        super().__init__(flatten_state_dict=False)
        self.loaders = loaders

    def resolve_data(self, write_item: WriteItem) -> Any:
        if write_item.type == WriteItemType.BYTE_IO or write_item.tensor_data is None:
            return super().resolve_data(write_item)
        shard = (write_item.index.fqn, tuple(write_item.index.offset or ()))
        if shard not in self.loaders:
            return super().resolve_data(write_item)
        tensor = self.loaders[shard]()
        expected = write_item.tensor_data.properties.dtype
        sizes = tuple(write_item.tensor_data.chunk.sizes)
        if tensor.dtype != expected or tuple(tensor.shape) not in (sizes, sizes[1:]):
            raise RuntimeError(  # loaders and declarations come from the same headers
                f"{shard[0]}: produced {tensor.dtype} {tuple(tensor.shape)}, declared {expected} {sizes}"
            )
        return tensor.reshape(sizes)  # a layer's shard has a leading axis of 1 (the stacked layers)


class _FilePerKeyWriter(FileSystemWriter):
    """torch's ``FileSystemWriter`` writing all shards of one key per file (sharded objects share one).

    Its writer keeps the last tensor written under each key until the file is closed (it needs them
    only for safetensors output); with one file for the whole checkpoint that holds the embedding
    and the output layer to the end. One file per key bounds it to the current key's last shard.
    """

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        groups: dict[str | None, list[WriteItem]] = {}
        for item in plan.items:
            groups.setdefault(None if item.type == WriteItemType.BYTE_IO else item.index.fqn, []).append(item)
        files: queue.Queue = queue.Queue()
        for number, items in enumerate(groups.values()):
            name = f"{plan.storage_data.prefix}{number}{DEFAULT_SUFFIX}"
            files.put((self.fs.concat_path(self.path, name), name, items))
        return self._write_data(planner, files)


class StreamingSaveStrategy(TorchDistSaveShardedStrategy):
    """torch_dist save strategy whose ``loaders`` produce the data of shards declared on ``meta``.

    ``loaders`` is keyed by ``(ShardedTensor.key, ShardedTensor.global_offset)``; shards not in it
    are written from their data as usual. Synchronous only.
    """

    def __init__(self, loaders: dict[ShardId, Loader]):
        super().__init__("torch_dist", 1)
        self.loaders = loaders

    def save(self, sharded_state_dict: Any, checkpoint_dir: Path) -> None:
        by_key, _, _ = _replace_state_dict_keys_with_sharded_keys(
            sharded_state_dict, keep_only_main_replica=True
        )
        pyt_state_dict = mcore_to_pyt_state_dict(by_key, is_loading=False)
        dcp.save(
            pyt_state_dict,
            storage_writer=_FilePerKeyWriter(str(checkpoint_dir), thread_count=1),
            planner=_LoadingPlanner(self.loaders),
        )

    def async_save(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("StreamingSaveStrategy saves synchronously only")
