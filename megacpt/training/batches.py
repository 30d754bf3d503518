"""Micro-batches for one training step, for this data-parallel rank, from a map-style dataset.

Step ``s`` consumes global samples ``[s * G, (s + 1) * G)`` (``G`` the global batch); data-parallel
rank ``r`` of ``D`` takes the ``r``-th contiguous ``G / D`` of them, cut into micro-batches. The
position in the data is therefore a pure function of the step, which is what makes resume exact
and lets a checkpoint move to another data-parallel size.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, default_collate

BATCH_KEYS = ("tokens", "labels", "loss_mask", "position_ids")


def step_microbatches(
    dataset: Dataset,
    *,
    step: int,
    global_batch_size: int,
    micro_batch_size: int,
    dp_rank: int,
    dp_size: int,
) -> list[dict[str, torch.Tensor]]:
    """The micro-batches this rank runs at ``step``: ``global / (micro x dp)`` dicts of ``[b, s]`` tensors."""
    per_rank = global_batch_size // dp_size
    start = step * global_batch_size + dp_rank * per_rank
    batches = []
    for first in range(start, start + per_rank, micro_batch_size):
        samples = [dataset[i] for i in range(first, first + micro_batch_size)]
        batch = default_collate([{k: torch.as_tensor(s[k]) for k in BATCH_KEYS} for s in samples])
        batches.append(batch)
    return batches


def split_for_context_parallel(
    batch: dict[str, torch.Tensor], cp_rank: int, cp_size: int
) -> dict[str, torch.Tensor]:
    """This context-parallel rank's share of each sequence: chunks ``r`` and ``2 cp - 1 - r`` of ``2 cp``.

    Pairing an early and a late chunk balances causal-attention work across ranks (Megatron's layout).
    """
    if cp_size == 1:
        return batch
    out = {}
    for key, value_bs in batch.items():
        b, s = value_bs.shape
        chunks = value_bs.view(b, 2 * cp_size, s // (2 * cp_size))
        index = torch.tensor([cp_rank, 2 * cp_size - cp_rank - 1])
        out[key] = chunks.index_select(1, index).reshape(b, -1)
    return out
