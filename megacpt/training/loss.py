"""The forward step and masked language-model loss handed to Megatron's pipeline schedules.

The per-token loss comes from ``GPTModel`` itself (Megatron's vocabulary-parallel cross entropy);
the vocabulary's padding rows are already masked out of the logits by the model builder (see
``megacpt.model.builder.mask_vocab_padding``), so the loss is over the true vocabulary at any TP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import torch
from megatron.core import parallel_state

from megacpt.training.batches import split_for_context_parallel


def masked_lm_loss(
    loss_mask_bs: torch.Tensor, losses_bs: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean token loss over the unmasked tokens of one micro-batch (over the whole sequence under CP).

    Under context parallelism each rank holds part of every sequence: sums and counts are added over
    the CP group (the schedule then scales by the CP size, as gradients are averaged over DP x CP).
    The reported value is a copy: the schedule divides the returned loss in place.
    """
    mask = loss_mask_bs.float().view(-1)
    total = torch.stack([(losses_bs.float().reshape(-1) * mask).sum(), mask.sum()])
    if parallel_state.get_context_parallel_world_size() > 1:
        torch.distributed.all_reduce(total, group=parallel_state.get_context_parallel_group())
    loss = total[0] / total[1].clamp(min=1.0)
    return loss, {"lm_loss": loss.detach().clone()}


def forward_step(
    data_iterator: Iterator[dict[str, torch.Tensor]], model: torch.nn.Module
) -> tuple[torch.Tensor, Callable]:
    """Run one micro-batch through one model chunk; the loss function applies on the last stage."""
    batch = next(data_iterator)
    batch = split_for_context_parallel(
        batch, parallel_state.get_context_parallel_rank(), parallel_state.get_context_parallel_world_size()
    )
    device = next(model.parameters()).device
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    losses_bs = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    return losses_bs, partial(masked_lm_loss, batch["loss_mask"])
