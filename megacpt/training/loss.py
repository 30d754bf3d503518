"""The forward step and masked language-model loss handed to Megatron's pipeline schedules.

The per-token loss comes from ``GPTModel`` itself (Megatron's vocabulary-parallel cross entropy);
the vocabulary's padding rows are already masked out of the logits by the model builder (see
``megacpt.model.builder.mask_vocab_padding``), so the loss is over the true vocabulary at any TP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch.distributed import ProcessGroup

from megacpt.training.batches import split_for_context_parallel


def token_loss_sums(
    cp_group: ProcessGroup, loss_mask_bs: torch.Tensor, losses_bs: torch.Tensor
) -> torch.Tensor:
    """``[summed loss, token count]`` over the unmasked tokens of one micro-batch, over the whole
    sequence under context parallelism (each CP rank holds part of every sequence)."""
    mask = loss_mask_bs.float().view(-1)
    total = torch.stack([(losses_bs.float().reshape(-1) * mask).sum(), mask.sum()])
    if cp_group.size() > 1:
        torch.distributed.all_reduce(total, group=cp_group)
    return total


def masked_lm_loss(
    cp_group: ProcessGroup, loss_mask_bs: torch.Tensor, losses_bs: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean token loss of one micro-batch (the schedule then scales by the CP size, as gradients
    are averaged over DP x CP). The reported value is a copy: the schedule divides the loss in place."""
    total = token_loss_sums(cp_group, loss_mask_bs, losses_bs)
    loss = total[0] / total[1].clamp(min=1.0)
    return loss, {"lm_loss": loss.detach().clone()}


def summed_lm_loss(
    cp_group: ProcessGroup, loss_mask_bs: torch.Tensor, losses_bs: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed loss and token count of one micro-batch (validation adds them over the whole set)."""
    total = token_loss_sums(cp_group, loss_mask_bs, losses_bs)
    return total[0], {"sums": total.detach().clone()}


LossFunction = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]


def forward_step(
    data_iterator: Iterator[dict[str, torch.Tensor]],
    model: torch.nn.Module,
    *,
    cp_group: ProcessGroup,
    loss: LossFunction = masked_lm_loss,
) -> tuple[torch.Tensor, Callable]:
    """Run one micro-batch through one model chunk; ``loss`` applies on the last stage. Megatron's
    schedules call it with two arguments: bind the rest with ``functools.partial``."""
    batch = next(data_iterator)
    batch = split_for_context_parallel(batch, cp_group.rank(), cp_group.size())
    device = next(model.parameters()).device
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    losses_bs = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    return losses_bs, partial(loss, cp_group, batch["loss_mask"])
