"""Logit calibration of new vocabulary rows: a new token's logit follows how often it occurs.

Why: a new token built from its pieces (``subword_mean``) gets roughly the same logit whatever it
stands for, so on SmolLM2 a two-piece Korean syllable is predicted too rarely and an eight-piece
word far too often (``bench/results/embedding_init.md``). The base model would give the token the
probability of its whole piece sequence, which falls with the token's rarity.

How: a decoder's final hidden states share a near-constant component. ``bias_direction`` finds a
vector ``u`` with ``h · u ≈ 1`` for the base model's hidden states on target-language text (ridge
regression of ones on the states), so adding ``c · u`` to an output row adds about ``c`` to that
token's logit in every context: a per-token bias the architecture lacks. The text is a sample of
the new tokens' own base pieces, drawn by frequency, so no corpus is needed. The offset is the
token's log frequency on the expansion's training text (``new_tokens.tsv``) minus the mean over
new-token occurrences, so the new tokens' average logit is unchanged and only their spread follows
their frequency.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

ROWS, ROW_LENGTH, SKIP = 6, 256, 8  # calibration text: 6 rows of 256 tokens; the first 8 of each dropped
HiddenFn = Callable[[torch.Tensor], torch.Tensor]  # tokens [b, s] -> final hidden states [b, s, h]


@dataclass(frozen=True)
class Calibration:
    """A logit offset per new token and the hidden-space direction that carries it."""

    direction: torch.Tensor  # [hidden]
    offsets: torch.Tensor  # [new tokens]

    def shift(self) -> torch.Tensor:
        """What to add to the new output rows: ``[new tokens, hidden]``."""
        return self.offsets[:, None] * self.direction[None, :]


def frequency_offsets(frequencies: Sequence[int]) -> torch.Tensor:
    """``log(f + 1)`` minus its mean over occurrences (weighted by ``f``)."""
    f = torch.tensor([float(x) for x in frequencies], dtype=torch.float64)
    log_f = torch.log1p(f)
    total = float(f.sum())
    center = float((f * log_f).sum() / total) if total > 0 else float(log_f.mean())
    return (log_f - center).float()


def calibration_tokens(
    pieces: Sequence[Sequence[int]], frequencies: Sequence[int], max_length: int
) -> torch.Tensor:
    """Rows of the new tokens' base pieces, tokens drawn by frequency (fixed seed): ``[ROWS, length]``."""
    length = min(ROW_LENGTH, max_length)
    weights = [max(float(f), 0.0) + 1e-9 for f in frequencies]
    rng = random.Random(0)
    rows = []
    for _ in range(ROWS):
        row: list[int] = []
        while len(row) < length:
            row.extend(pieces[rng.choices(range(len(pieces)), weights=weights)[0]] or [0])
        rows.append(row[:length])
    return torch.tensor(rows, dtype=torch.long)


def bias_direction(hidden_nh: torch.Tensor) -> torch.Tensor:
    """``u`` minimising ``mean((h·u - 1)²) + λ|u|²`` (λ a thousandth of the states' mean square),
    scaled so that the states' mean projection is exactly 1."""
    h = hidden_nh.double()
    lam = 1e-3 * float(h.pow(2).mean())
    gram = h.T @ h / h.shape[0] + lam * torch.eye(h.shape[1], dtype=h.dtype)
    u = torch.linalg.solve(gram, h.mean(dim=0))
    return (u / (h @ u).mean()).float()


def calibrate(
    pieces: Sequence[Sequence[int]], frequencies: Sequence[int], hidden: HiddenFn, max_length: int
) -> Calibration:
    """The calibration of new tokens with these base ``pieces`` and training-text ``frequencies``."""
    if len(pieces) != len(frequencies) or not pieces:
        raise ValueError("one frequency per new token is needed")
    tokens = calibration_tokens(pieces, frequencies, max_length)
    hidden_bsh = hidden(tokens)
    states = hidden_bsh[:, SKIP:].reshape(-1, hidden_bsh.shape[-1])
    direction = bias_direction(states)
    if not all(math.isfinite(float(x)) for x in direction):
        raise ValueError("the hidden states give no finite bias direction")
    return Calibration(direction=direction, offsets=frequency_offsets(frequencies))


def hf_hidden(hf_dir: str) -> HiddenFn:
    """Final hidden states of a Hugging Face causal LM (the states its ``lm_head`` reads)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()

    @torch.no_grad()
    def run(tokens_bs: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=tokens_bs, output_hidden_states=True)
        return out.hidden_states[-1].float()

    return run
