"""A training-token budget over a data mixture: each dataset's share and the epochs it means
(``megacpt mix``); numpy only, no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from megacpt.data.mixture.spec import DataMixture, sequence_lengths, split_bounds
from megacpt.errors import UserError


@dataclass(frozen=True)
class BudgetRow:
    """One dataset's part of a training-token budget."""

    name: str
    lang: str
    weight: float  # normalised share of sampled tokens
    tokens: int  # tokens this dataset contributes to the budget
    dataset_tokens: int  # tokens available in (the train split of) this dataset
    epochs: float  # tokens / dataset_tokens: how many passes over the dataset that is


def token_budget_table(mixture: DataMixture, total_tokens: int, split: str | None = None) -> list[BudgetRow]:
    """Each dataset's share of ``total_tokens`` and the epochs over it that the share means.

    With ``split`` (e.g. ``"98,2,0"``), ``dataset_tokens`` counts only the documents of the train
    split, the part that training actually draws from, as Megatron carves it.
    """
    if total_tokens <= 0:
        raise UserError(f"the token budget must be positive, got {total_tokens}")
    mixture.check_files()
    train_bounds = split_bounds(split)[0] if split is not None else (0.0, 1.0)
    rows = []
    for entry, share in zip(mixture.entries, mixture.shares()):
        lengths = sequence_lengths(entry)
        beg, end = (round(b * len(lengths)) for b in train_bounds or (0.0, 0.0))
        available = int(lengths[beg:end].sum())
        if not available and share > 0:
            raise UserError(
                f"dataset '{entry.name}' has {len(lengths)} documents: the split {split} leaves none of them "
                "to train on; give the train part a share"
            )
        tokens = round(total_tokens * share)
        epochs = tokens / available if available else 0.0
        rows.append(BudgetRow(entry.name, entry.lang, share, tokens, available, epochs))
    return rows


def parse_token_count(text: str) -> int:
    """Read a token count such as ``2000000``, ``2e9``, ``500M``, ``100B`` or ``1.5T``."""
    scale = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
    body = text.strip().replace("_", "").replace(",", "")
    factor = scale.get(body[-1:].upper(), 1)
    if factor != 1:
        body = body[:-1]
    try:
        value = float(body) * factor
    except ValueError:
        raise UserError(f"not a token count: {text!r} (examples: 2000000, 2e9, 500M, 100B)") from None
    if not math.isfinite(value) or value < 1:
        raise UserError(f"a token count must be at least 1, got {text!r}")
    return round(value)


def format_budget_table(rows: list[BudgetRow]) -> str:
    """A plain-text table of a token budget, with a total line."""
    header = ("dataset", "lang", "share", "tokens", "dataset tokens", "epochs")
    body = [
        (r.name, r.lang, f"{r.weight:.2%}", f"{r.tokens:,}", f"{r.dataset_tokens:,}", f"{r.epochs:.2f}")
        for r in rows
    ]
    total = sum(r.tokens for r in rows)
    body.append(("total", "", "100.00%", f"{total:,}", f"{sum(r.dataset_tokens for r in rows):,}", ""))
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(line.rstrip() for line in lines)
