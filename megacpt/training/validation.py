"""Validation on whole held-out documents: loss and bits per byte, per language.

The documents are those of ``data.valid_datasets`` (Megatron-LM's separate validation data), or
else the validation split (``data.split``) of each training dataset. Per language, the first
``training.eval_steps x training.global_batch_size`` documents are taken (round-robin over that
language's datasets), whole: a count of documents, not of tokens, so that runs with different
tokenizers (the base model and its expanded successor) score exactly the same text. The same
documents are scored at every evaluation. Each document is cut into the per-document windows of ``megacpt.evaluate.windows``
(prefix: the end-of-document id; the document's own end-of-document token is not scored), so the
figures are lm-evaluation-harness' ``loglikelihood_rolling`` on the same text:

- ``val_loss/<lang>``: summed negative log-likelihood / scored tokens (nats per token);
- ``val_bpb/<lang>``: summed negative log-likelihood / ln 2 / the documents' UTF-8 bytes, read
  from ``<prefix>.doc_bytes.npy`` (``megacpt.data.doc_bytes``); a dataset without that file gets
  no ``val_bpb``, and the run says so once.

Windows are sorted by length and batched; each global batch is cut to its longest window (rounded
for sequence and context parallelism; pipeline stages are told that length), so short documents
cost little.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from megatron.core import parallel_state

from megacpt.config.schema import Config, DatasetEntry
from megacpt.data import doc_bytes
from megacpt.data.mixture import split_bounds
from megacpt.evaluate.windows import Score, Window, document_windows
from megacpt.training.batches import split_for_context_parallel


@dataclass
class ValidationSet:
    """One language's held-out documents as windows, and their UTF-8 size (None: unknown)."""

    windows: list[Window] = field(default_factory=list)
    bytes: int | None = 0
    documents: int = 0


def _entries(config: Config) -> tuple[list[DatasetEntry], bool]:
    """The datasets validation reads, and whether only their validation split counts."""
    if config.data.valid_datasets:
        return list(config.data.valid_datasets), False
    return list(config.data.datasets), True


def _documents(entry: DatasetEntry, split: str | None, eod: int) -> Iterator[tuple[np.ndarray, int | None]]:
    """(token ids without the end-of-document token, UTF-8 bytes) of the documents validation may
    use, in order, read lazily (a validation split can hold millions)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(entry.prefix)
    count = len(dataset.document_indices) - 1
    first, last = 0, count
    if split is not None:
        bounds = split_bounds(split)[1]
        first, last = (round(b * count) for b in bounds) if bounds is not None else (0, 0)
    sizes = doc_bytes.read(entry.prefix)
    if sizes is not None and len(sizes) != count:
        sizes = None
    for doc in range(first, last):
        ids = np.asarray(dataset.get(doc) if dataset.sequence_lengths[doc] else [], dtype=np.int64)
        if len(ids) and ids[-1] == eod:
            ids = ids[:-1]
        if len(ids):
            yield ids, int(sizes[doc]) if sizes is not None else None


def build_validation_sets(config: Config) -> dict[str, ValidationSet]:
    """Per language, the windows of the documents validation scores (see the module docstring)."""
    entries, use_split = _entries(config)
    t, d = config.training, config.data
    wanted = (t.eval_steps or 0) * t.global_batch_size
    by_lang: dict[str, list[Iterator[tuple[np.ndarray, int | None]]]] = {}
    for entry in entries:
        by_lang.setdefault(entry.lang, []).append(_documents(entry, d.split if use_split else None, d.eod_id))
    sets: dict[str, ValidationSet] = {}
    for lang, sources in by_lang.items():
        chosen = ValidationSet()
        while sources and chosen.documents < wanted:
            for source in list(sources):
                item = next(source, None) if chosen.documents < wanted else None
                if item is None:
                    sources.remove(source)
                    continue
                ids, size = item
                chosen.windows += document_windows(ids.tolist(), d.eod_id, d.seq_length)
                chosen.documents += 1
                chosen.bytes = None if chosen.bytes is None or size is None else chosen.bytes + size
        if chosen.windows:
            chosen.windows.sort(key=lambda w: -len(w.targets))
            sets[lang] = chosen
    return sets


def summed_lm_loss(
    loss_mask_bs: torch.Tensor, losses_bs: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed NLL and token count of one micro-batch (over the whole sequence under CP)."""
    mask = loss_mask_bs.float().view(-1)
    total = torch.stack([(losses_bs.float().reshape(-1) * mask).sum(), mask.sum()])
    if parallel_state.get_context_parallel_world_size() > 1:
        torch.distributed.all_reduce(total, group=parallel_state.get_context_parallel_group())
    return total[0], {"sums": total.detach().clone()}


def _eval_step(data_iterator: Any, model: torch.nn.Module) -> tuple[torch.Tensor, Callable]:
    batch = next(data_iterator)
    batch = split_for_context_parallel(
        batch, parallel_state.get_context_parallel_rank(), parallel_state.get_context_parallel_world_size()
    )
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    losses_bs = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    return losses_bs, partial(summed_lm_loss, batch["loss_mask"])


def _micro_batch(windows: list[Window], width: int) -> dict[str, torch.Tensor]:
    b = len(windows)
    tokens = torch.zeros(b, width, dtype=torch.long)
    labels = torch.zeros(b, width, dtype=torch.long)
    mask = torch.zeros(b, width, dtype=torch.float)
    for row, window in enumerate(windows):
        n = len(window.targets)
        tokens[row, :n] = torch.tensor(window.inputs)
        labels[row, :n] = torch.tensor(window.targets)
        mask[row, :n] = 1.0
    positions = torch.arange(width).expand(b, width).contiguous()
    return {"tokens": tokens, "labels": labels, "loss_mask": mask, "position_ids": positions}


class Validator:
    """Scores the validation sets with the current model chunks; every rank calls ``run`` together."""

    def __init__(self, config: Config, sets: dict[str, ValidationSet], data_parallel_size: int) -> None:
        self.config = config
        self.sets = sets
        self.dp = data_parallel_size
        p = config.parallel
        sp = p.sequence_parallel and p.tensor_model_parallel_size > 1
        self.multiple = (p.tensor_model_parallel_size if sp else 1) * (
            2 * p.context_parallel_size if p.context_parallel_size > 1 else 1
        )

    def describe(self) -> str:
        parts = []
        for lang, s in self.sets.items():
            size = f"{s.bytes:,} bytes" if s.bytes is not None else "bytes unknown (no .doc_bytes.npy)"
            parts.append(f"{lang} {s.documents} documents, {len(s.windows)} windows, {size}")
        return "validation: " + "; ".join(parts)

    def _width(self, windows: list[Window]) -> int:
        seq = self.config.data.seq_length
        longest = max([1, *(len(w.targets) for w in windows)])
        return min(seq, -(-longest // self.multiple) * self.multiple) if seq % self.multiple == 0 else seq

    def _microbatches(self, windows: list[Window], dp_rank: int, width: int) -> list[dict[str, torch.Tensor]]:
        """This rank's micro-batches of one global batch (short batches padded with empty windows)."""
        t = self.config.training
        per_rank = t.global_batch_size // self.dp
        empty = Window(inputs=[], targets=[])
        padded = windows + [empty] * (t.global_batch_size - len(windows))
        mine = padded[dp_rank * per_rank : (dp_rank + 1) * per_rank]
        chunks = [mine[i : i + t.micro_batch_size] for i in range(0, per_rank, t.micro_batch_size)]
        return [_micro_batch(chunk, width) for chunk in chunks]

    def run(self, models: list[Any], forward_backward: Callable, device: torch.device) -> dict[str, float]:
        """``val_loss/<lang>`` and (where the bytes are known) ``val_bpb/<lang>``."""
        t = self.config.training
        results: dict[str, float] = {}
        for model in models:
            model.eval()
        with torch.no_grad():
            for lang, vset in self.sets.items():
                sums = torch.zeros(2, dtype=torch.float64, device=device)
                for start in range(0, len(vset.windows), t.global_batch_size):
                    batch = vset.windows[start : start + t.global_batch_size]
                    width = self._width(batch)
                    micro = self._microbatches(batch, parallel_state.get_data_parallel_rank(), width)
                    iterators = [iter(micro) for _ in models]
                    out = forward_backward(
                        forward_step_func=_eval_step,
                        data_iterator=iterators if len(iterators) > 1 else iterators[0],
                        model=models if len(models) > 1 else models[0],
                        num_microbatches=len(micro),
                        seq_length=width,
                        micro_batch_size=t.micro_batch_size,
                        forward_only=True,
                    )
                    if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
                        for record in out:
                            sums += record["sums"].to(sums)
                sums = self._reduce(sums)
                score = Score(nll=float(sums[0]), tokens=int(sums[1]), bytes=vset.bytes or 0)
                results[f"val_loss/{lang}"] = score.loss
                if vset.bytes:
                    results[f"val_bpb/{lang}"] = score.bits_per_byte
        for model in models:
            model.train()
        return results

    def _reduce(self, sums: torch.Tensor) -> torch.Tensor:
        """Sum over data-parallel ranks on the last pipeline stage, then give every rank the result."""
        if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
            torch.distributed.all_reduce(sums, group=parallel_state.get_data_parallel_group())
        last = parallel_state.get_pipeline_model_parallel_last_rank()
        torch.distributed.broadcast(sums, src=last, group=parallel_state.get_pipeline_model_parallel_group())
        return sums
