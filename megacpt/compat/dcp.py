"""Private parts of torch's distributed checkpointing (DCP) and Megatron's writer that megacpt uses.

- ``storage_info`` builds DCP's ``_StorageInfo`` (where an item sits in a data file), for adding
  tensors to a checkpoint in place (``checkpoint.tensors.replace_tensors``).
- ``checkpoint_writer_without_manager``: Megatron's filesystem writer collects its results through
  a ``multiprocessing.Manager`` queue, a spawned server process (~280 MB) that outlives a killed
  trainer. Saves here are synchronous (the results are put and read by the training process
  itself), so a thread-safe in-process ``queue.Queue`` does the same job; a ``multiprocessing``
  queue would not: its ``put`` returns before the item can be read, and the writer reads at once.
- ``METADATA_PICKLE_*``: the modules and globals a DCP ``.metadata`` pickle may name, for reading
  it without running code (``megacpt.checkpoint.meta``): DCP's own metadata classes and a few builtins.
- ``fake_store`` is torch's test-only ``FakeStore``: a process group of any size that never
  communicates, for building a rank's model on the meta device (``plan.meta_build``).
"""

from __future__ import annotations

import queue
from typing import Any

METADATA_PICKLE_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner")
METADATA_PICKLE_GLOBALS = {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath"),
}


def storage_info(relative_path: str, offset: int, length: int) -> Any:
    """DCP's record of an item's bytes: ``length`` bytes at ``offset`` in ``relative_path``."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo

    return _StorageInfo(relative_path, offset, length)


def checkpoint_writer_without_manager() -> None:
    """Give Megatron's filesystem writer a plain queue instead of a Manager server process."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if filesystem_async._results_queue is None:
        filesystem_async._results_queue = queue.Queue()


def fake_store() -> Any:
    """A store for ``init_process_group("fake", ...)``."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    return FakeStore()
