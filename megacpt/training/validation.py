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

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from megacpt.config.schema import Config, DatasetEntry
from megacpt.data import doc_bytes
from megacpt.data.mixture.spec import split_bounds
from megacpt.evaluate.windows import Score, Window, document_windows
from megacpt.parallel.runtime import Runtime
from megacpt.training.loss import forward_step, summed_lm_loss


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


def validates(config: Config) -> bool:
    """Whether a run validates at all: with an interval, at the start or at stage ends, or given
    held-out datasets (then at least once, at the end)."""
    t = config.training
    return bool(t.eval_interval or t.eval_at_start or t.eval_at_stage_end or config.data.valid_datasets)


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

    def __init__(self, config: Config, sets: dict[str, ValidationSet], runtime: Runtime) -> None:
        self.config = config
        self.sets = sets
        self.runtime = runtime
        self.dp = runtime.data_parallel_size
        self.validated_at: int | None = None
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

    def due(
        self, step: int, *, at_start: bool = False, at_stage_end: bool = False, at_end: bool = False
    ) -> bool:
        """Whether to validate at ``step``: at the start with ``eval_at_start``, at the end of a stage
        with ``eval_at_stage_end``, every ``eval_interval`` steps, and at the end of a run that
        validates at all (once per step)."""
        t = self.config.training
        if not self.sets or self.validated_at == step:
            return False
        if at_start:
            return t.eval_at_start and step == 0
        if at_stage_end:
            return t.eval_at_stage_end
        if at_end:
            return validates(self.config)
        return t.eval_interval is not None and t.eval_interval > 0 and step % t.eval_interval == 0

    def run(self, models: list[Any], forward_backward: Callable, step: int) -> dict[str, float]:
        """``val_loss/<lang>`` and (where the bytes are known) ``val_bpb/<lang>``, at ``step``."""
        t, rt = self.config.training, self.runtime
        step_func = functools.partial(forward_step, cp_group=rt.groups.cp, loss=summed_lm_loss)
        self.validated_at = step
        results: dict[str, float] = {}
        for model in models:
            model.eval()
        with torch.no_grad():
            for lang, vset in self.sets.items():
                sums = torch.zeros(2, dtype=torch.float64, device=rt.device)
                for start in range(0, len(vset.windows), t.global_batch_size):
                    batch = vset.windows[start : start + t.global_batch_size]
                    width = self._width(batch)
                    micro = self._microbatches(batch, rt.data_parallel_rank, width)
                    iterators = [iter(micro) for _ in models]
                    out = forward_backward(
                        forward_step_func=step_func,
                        data_iterator=iterators if len(iterators) > 1 else iterators[0],
                        model=models if len(models) > 1 else models[0],
                        num_microbatches=len(micro),
                        seq_length=width,
                        micro_batch_size=t.micro_batch_size,
                        forward_only=True,
                    )
                    if rt.is_last_pipeline_stage:
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
        rt = self.runtime
        if rt.is_last_pipeline_stage:
            torch.distributed.all_reduce(sums, group=rt.groups.dp)
        torch.distributed.broadcast(sums, src=rt.last_pipeline_rank, group=rt.groups.pp)
        return sums
