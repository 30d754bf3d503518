"""New input rows learnt from the frozen base model: token distillation (arXiv 2505.20133).

A new token stands for a sequence of base pieces, and the base model already knows what that
sequence means; the averaged rows of ``megacpt.convert.resize`` only approximate it. Windows of
the expansion's own training text are tokenised twice (with the base tokenizer and with the
expanded one) and aligned where both end a token at the same character. The frozen base reads
each window with the expanded tokens, embedding the new ones with trainable rows, and its final
hidden states at every aligned position from the first new token on are pulled (mean squared
error) towards the states it has at the same position when it reads the base pieces. Gradients
reach only the new rows (Adam, a fixed number of steps); everything else stays bitwise as it was.

Forward passes run under bf16 autocast (the targets and the rows stay fp32). Plain PyTorch over a
small ``FrozenBase`` interface, for any causal LM that ``transformers`` loads; the awedist
reference code (MIT) assumes Hugging Face training loops and a GPU, which this needs neither of.
A megacpt checkpoint is distilled through its Hugging Face export (``resize_checkpoint``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from megacpt.convert.methods import DistillConfig
from megacpt.errors import UserError


class FrozenBase(Protocol):
    """What distillation needs of the base model: its tables and its final hidden states."""

    embedding: torch.Tensor  # [old vocab, hidden] input rows, fp32
    output: torch.Tensor  # [old vocab, hidden] output rows, fp32 (the embedding when tied)

    def hidden(self, inputs_embeds_bsh: torch.Tensor) -> torch.Tensor:
        """Final (normalised) hidden states ``[b, s, hidden]`` for input embeddings ``[b, s, hidden]``."""
        ...


@dataclass
class Window:
    """One piece of text, tokenised by both tokenizers (each preceded by the end-of-document id)."""

    base_ids: list[int]
    new_ids: list[int]
    pairs: list[tuple[int, int]]  # (expanded position, base position) of aligned token ends


@dataclass
class LearntRows:
    """The distilled new input rows and what the distillation saw."""

    input: torch.Tensor
    windows: int
    tokens_seen: int  # new tokens with at least one occurrence in the windows
    tokens_total: int
    seconds: float
    losses: list[float]

    def summary(self) -> str:
        unseen = self.tokens_total - self.tokens_seen
        return (
            f"distilled the new input rows on {self.windows} windows in {self.seconds:.0f} s, hidden-state "
            f"MSE {self.losses[0]:.4g} -> {self.losses[-1]:.4g}; {unseen} of {self.tokens_total} new tokens "
            "never occur in the distillation text and keep their averaged rows"
        )


# -- windows -------------------------------------------------------------------------------------


def closed_ends(offsets: Sequence[tuple[int, int]]) -> dict[int, int]:
    """character end -> position of the last token ending there (several byte pieces share an end)."""
    return {end: i for i, (_, end) in enumerate(offsets)}


def _cut(text: str, chars: int) -> Iterator[str]:
    """``text`` in pieces of about ``chars`` characters, cut after a space or punctuation when near."""
    start = 0
    while start < len(text):
        stop = min(len(text), start + chars)
        if stop < len(text):
            near = max(text.rfind(c, start + chars // 2, stop) for c in " 。、.,\n")
            stop = near + 1 if near >= 0 else stop
        piece = text[start:stop]
        if piece.strip():
            yield piece
        start = stop


def make_windows(
    texts: Sequence[str], base_tokenizer: Any, tokenizer: Any, old_size: int, eod: int, cfg: DistillConfig
) -> list[Window]:
    """Windows of about ``cfg.window`` expanded tokens holding new tokens, ``cfg.tokens`` in total,
    from ``texts`` in a fixed shuffled order."""
    order = list(range(len(texts)))
    random.Random(cfg.seed).shuffle(order)
    windows: list[Window] = []
    total = 0
    for index in order:
        for piece in _cut(texts[index], cfg.window * 2):
            if total >= cfg.tokens:
                return windows
            window = _window(piece, base_tokenizer, tokenizer, old_size, eod, cfg.window)
            if window is not None:
                windows.append(window)
                total += len(window.new_ids)
    return windows


def _window(text: str, base_tokenizer: Any, tokenizer: Any, old: int, eod: int, limit: int) -> Window | None:
    base = base_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    new = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    new_ids, new_offsets = new["input_ids"][:limit], new["offset_mapping"][:limit]
    if not any(i >= old for i in new_ids):
        return None
    end = new_offsets[-1][1]
    keep = [i for i, (_, e) in enumerate(base["offset_mapping"]) if e <= end]
    base_ids = [base["input_ids"][i] for i in keep]
    base_ends = closed_ends([base["offset_mapping"][i] for i in keep])
    new_ends = closed_ends(new_offsets)
    # position 0 of both is the end-of-document id, so token i sits at position i + 1
    pairs = [(0, 0)] + [(j + 1, base_ends[e] + 1) for e, j in new_ends.items() if e in base_ends]
    pairs.sort()
    return Window([eod, *base_ids], [eod, *new_ids], pairs)


# -- learning ------------------------------------------------------------------------------------


def _pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


@contextmanager
def _autocast(device: torch.device) -> Iterator[None]:
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


@torch.no_grad()
def _teacher(base: FrozenBase, windows: Sequence[Window], cfg: DistillConfig) -> list[torch.Tensor]:
    """Per window, the base's final hidden states at its aligned positions (fp32)."""
    device = base.embedding.device
    targets: list[torch.Tensor] = []
    for start in range(0, len(windows), cfg.batch_size):
        batch = windows[start : start + cfg.batch_size]
        ids_bs = _pad([w.base_ids for w in batch]).to(device)
        with _autocast(device):
            hidden_bsh = base.hidden(base.embedding[ids_bs])
        hidden_bsh = hidden_bsh.float()
        for row, w in enumerate(batch):
            positions = torch.tensor([b for _, b in w.pairs], device=device)
            targets.append(hidden_bsh[row, positions].cpu())
    return targets


def distill_input_rows(
    base: FrozenBase,
    windows: Sequence[Window],
    start_rows: torch.Tensor,
    targets: list[torch.Tensor],
    old: int,
    cfg: DistillConfig,
    log: Callable[[str], None] = print,
) -> tuple[torch.Tensor, list[float]]:
    """The new input rows after ``cfg.steps`` Adam steps of hidden-state matching."""
    device = base.embedding.device
    rows = start_rows.detach().float().clone().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([rows], lr=cfg.lr)
    rng = random.Random(cfg.seed)
    usable = [i for i, w in enumerate(windows) if any(t >= old for t in w.new_ids)]
    losses: list[float] = []
    for step in range(cfg.steps):
        batch = rng.sample(usable, min(cfg.batch_size, len(usable)))
        ids_bs = _pad([windows[i].new_ids for i in batch]).to(device)
        is_new = ids_bs >= old
        table = base.embedding[ids_bs.clamp(max=old - 1)]
        embeds = torch.where(is_new[..., None], rows[(ids_bs - old).clamp(min=0)], table)
        with _autocast(device):
            hidden_bsh = base.hidden(embeds)
        errors, count = [], 0
        for row, i in enumerate(batch):
            w = windows[i]
            first_new = next(j for j, t in enumerate(w.new_ids) if t >= old)
            keep = [k for k, (j, _) in enumerate(w.pairs) if j >= first_new]
            positions = torch.tensor([w.pairs[k][0] for k in keep], device=device)
            target = targets[i][keep].to(device)
            errors.append((hidden_bsh[row, positions].float() - target).pow(2).sum())
            count += len(keep) * target.shape[1]
        loss = torch.stack(errors).sum() / max(count, 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 16 == 0 or step == cfg.steps - 1:
            log(f"  distil input rows: step {step + 1}/{cfg.steps}, hidden-state MSE {losses[-1]:.4g}")
    return rows.detach().cpu(), losses


def learn_rows(
    base: FrozenBase,
    windows: Sequence[Window],
    start_rows: torch.Tensor,
    old: int,
    cfg: DistillConfig,
    log: Callable[[str], None] = print,
) -> LearntRows:
    """The new input rows distilled from ``start_rows`` on ``windows``."""
    if not windows:
        raise UserError(
            "the distillation text holds no new token: give text in the expansion's languages (--distill-text)"
        )
    begin = time.perf_counter()
    targets = _teacher(base, windows, cfg)
    log(f"  the base model read {len(windows)} windows ({time.perf_counter() - begin:.0f} s)")
    rows, losses = distill_input_rows(base, windows, start_rows, targets, old, cfg, log)
    return LearntRows(
        input=rows,
        windows=len(windows),
        tokens_seen=len({t for w in windows for t in w.new_ids if t >= old}),
        tokens_total=start_rows.shape[0],
        seconds=time.perf_counter() - begin,
        losses=losses,
    )


# -- base models ---------------------------------------------------------------------------------


class _HFBase:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.embedding = model.get_input_embeddings().weight.detach().float()
        self.output = model.get_output_embeddings().weight.detach().float()

    def hidden(self, inputs_embeds_bsh: torch.Tensor) -> torch.Tensor:
        return self.model.model(inputs_embeds=inputs_embeds_bsh).last_hidden_state


def hf_base(hf_dir: str) -> FrozenBase:
    """A Hugging Face causal LM as a frozen base (weights never receive gradients)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return _HFBase(model)
