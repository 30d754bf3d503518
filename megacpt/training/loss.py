"""The forward step and masked language-model loss handed to Megatron's pipeline schedules.

The loss is computed here rather than inside ``GPTModel`` so that the vocabulary's padding rows
(added to make the vocabulary divisible by ``make_vocab_size_divisible_by x TP``) are masked out of
the softmax. Megatron's own loss includes them, which makes the loss depend on the padding, and so
on TP, and differ from the Hugging Face model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.tensor_parallel.utils import VocabUtility

from megacpt.training.batches import split_for_context_parallel


def mask_vocab_padding(logits_sbv: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Set the logits of padding ids (>= ``vocab_size``) in this TP rank's vocabulary slice to -inf."""
    per_rank = logits_sbv.shape[-1]
    first, last = VocabUtility.vocab_range_from_per_partition_vocab_size(
        per_rank,
        parallel_state.get_tensor_model_parallel_rank(),
        parallel_state.get_tensor_model_parallel_world_size(),
    )
    if last <= vocab_size:
        return logits_sbv
    padding = torch.arange(first, last, device=logits_sbv.device) >= vocab_size
    return logits_sbv.masked_fill(padding, float("-inf"))


def token_losses(logits_bsv: torch.Tensor, labels_bs: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Per-token cross entropy ``[b, s]`` over the true vocabulary, from vocabulary-parallel logits."""
    logits_sbv = mask_vocab_padding(logits_bsv.transpose(0, 1).float(), vocab_size)
    losses_sb = tensor_parallel.vocab_parallel_cross_entropy(
        logits_sbv.contiguous(), labels_bs.transpose(0, 1).contiguous()
    )
    return losses_sb.transpose(0, 1)


def masked_lm_loss(
    loss_mask_bs: torch.Tensor, labels_bs: torch.Tensor, vocab_size: int, logits_bsv: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean token loss over the unmasked tokens of one micro-batch (over the whole sequence under CP).

    Under context parallelism each rank holds part of every sequence: sums and counts are added over
    the CP group (the schedule then scales by the CP size, as gradients are averaged over DP x CP).
    The reported value is a copy: the schedule divides the returned loss in place.
    """
    losses_bs = token_losses(logits_bsv, labels_bs, vocab_size)
    mask = loss_mask_bs.float().view(-1)
    total = torch.stack([(losses_bs.reshape(-1) * mask).sum(), mask.sum()])
    if parallel_state.get_context_parallel_world_size() > 1:
        torch.distributed.all_reduce(total, group=parallel_state.get_context_parallel_group())
    loss = total[0] / total[1].clamp(min=1.0)
    return loss, {"lm_loss": loss.detach().clone()}


def forward_step(
    data_iterator: Iterator[dict[str, torch.Tensor]], model: torch.nn.Module, *, vocab_size: int
) -> tuple[torch.Tensor, Callable]:
    """Run one micro-batch through one model chunk; the loss function applies on the last stage."""
    batch = next(data_iterator)
    batch = split_for_context_parallel(
        batch, parallel_state.get_context_parallel_rank(), parallel_state.get_context_parallel_world_size()
    )
    device = next(model.parameters()).device
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    output = model(batch["tokens"], batch["position_ids"], None)
    return output, partial(masked_lm_loss, batch["loss_mask"], batch["labels"], vocab_size)
