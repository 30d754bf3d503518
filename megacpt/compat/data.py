"""Workarounds in Megatron-core's dataset building.

- ``single_process_rank``: Megatron-core 0.16.1's ``BlendedDataset`` calls
  ``torch.distributed.get_rank()`` on a cache miss even when torch.distributed is not initialised
  (which raises). Alone, a process is rank 0: the call is answered so for the block's duration.
- ``keep_only_split``: a ``GPTDatasetConfig`` derives ``split_matrix`` from ``split`` at
  construction; keeping one split (train or valid) means editing the derived field afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def single_process_rank() -> Iterator[None]:
    """``torch.distributed.get_rank()`` returns 0 inside the block when no process group exists."""
    if torch.distributed.is_initialized():
        yield
        return
    original = torch.distributed.get_rank
    torch.distributed.get_rank = lambda group=None: 0
    try:
        yield
    finally:
        torch.distributed.get_rank = original


def keep_only_split(config: Any, keep: int) -> Any:
    """``config`` (a ``GPTDatasetConfig``) building only split number ``keep`` (0 train, 1 valid)."""
    config.split_matrix = [b if i == keep else None for i, b in enumerate(config.split_matrix)]
    return config
