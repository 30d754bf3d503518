"""Initialisation of new vocabulary rows after tokenizer expansion, and the base-tokenizer decomposition.

Methods, chosen separately for input (embedding) and output (LM head) rows:

- ``random``: normal, mean 0, standard deviation of all existing rows' elements;
- ``mean``: the mean of all existing rows;
- ``subword_mean``: the mean of the rows of the new token's pieces under the base tokenizer
  (Swallow; EEVE's input rows; RedWhale's decomposition);
- ``subword_first``: the row of the first such piece (EEVE's output rows);
- ``distill`` (input rows only): learnt from the frozen base model so that its hidden states after
  the new token match those after the token's pieces (``megacpt.convert.distill``), starting from
  ``subword_mean``.

Output rows (the one table, for tied embeddings) can also be logit-calibrated from the new tokens'
frequencies (``megacpt.convert.calibrate``). A new token whose text the base tokenizer turns into
no piece at all falls back to ``mean``; a
leading piece that is only SentencePiece's word-boundary marker is left out of the decomposition.
Tokenizers are read with ``transformers.AutoTokenizer``, which loads both SentencePiece and
byte-level BPE tokenizers the same way, so decomposition is what the base model saw in training; a
folder gives the same ids here as in expansion and preprocessing (``megacpt.tokenizer.formats``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from megacpt.convert.methods import METHODS
from megacpt.errors import UserError
from megacpt.inputs import read_json
from megacpt.tokenizer.formats import locate


@dataclass(frozen=True)
class Expansion:
    """The rows to add: base and expanded vocabulary sizes, each new token's base-tokenizer ids and,
    when the expansion recorded them, its frequencies on the expansion's training text."""

    old_size: int
    new_size: int
    pieces: list[list[int]]  # pieces[j]: base ids of token old_size + j
    frequencies: list[int] | None = None  # frequencies[j]: count of token old_size + j


NEW_TOKENS_FILE = "new_tokens.tsv"


def read_frequencies(expanded_dir: str | os.PathLike, old: int, new: int) -> list[int] | None:
    """Per-token frequencies from an expansion's ``new_tokens.tsv`` (None when it has none for ids
    ``old .. new-1``: a tokenizer not made by ``tools/expand_vocab.py``)."""
    path = Path(expanded_dir) / NEW_TOKENS_FILE
    if not path.is_file():
        return None
    counts: dict[int, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
            counts[int(fields[1])] = int(fields[2])
    if sorted(counts) != list(range(old, new)):
        return None
    return [counts[i] for i in range(old, new)]


def _load_tokenizer(path: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    locate(path)  # the detection every tool shares: a folder whose files disagree is refused here too
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot load a tokenizer from {path}: give a Hugging Face tokenizer folder "
            f"(tokenizer.json or tokenizer_config.json; tools/expand_vocab.py writes one) ({type(err).__name__})"
        ) from None


def expansion_from_tokenizers(base_dir: str | os.PathLike, expanded_dir: str | os.PathLike) -> Expansion:
    """Decompose every appended token of the expanded tokenizer with the base tokenizer."""
    base, expanded = _load_tokenizer(base_dir), _load_tokenizer(expanded_dir)
    old, new = len(base), len(expanded)
    if new <= old:
        raise UserError(f"expanded tokenizer has {new} tokens, not more than the base tokenizer's {old}")
    if expanded.convert_ids_to_tokens(list(range(old))) != base.convert_ids_to_tokens(list(range(old))):
        raise UserError("the expanded tokenizer changes the ids of base tokens; expansion must only append")
    _check_bpe_merges(Path(base_dir), Path(expanded_dir))
    pieces = [
        _strip_space_pieces(base, base.encode(expanded.decode([i]), add_special_tokens=False))
        for i in range(old, new)
    ]
    return Expansion(old, new, pieces, read_frequencies(expanded_dir, old, new))


def _check_bpe_merges(base_dir: Path, expanded_dir: Path) -> None:
    """For byte-level BPE tokenizers: the base's splitting and merges must come first, unchanged,
    or text the base covered would tokenise differently."""
    files = [d / "tokenizer.json" if d.is_dir() else d for d in (base_dir, expanded_dir)]
    if not all(f.is_file() and f.suffix == ".json" for f in files):
        return
    base, expanded = (read_json(f) for f in files)
    if "ByteLevel" not in json.dumps(base.get("pre_tokenizer")) or base.get("model", {}).get("type") != "BPE":
        return
    for key in ("normalizer", "pre_tokenizer"):
        if base.get(key) != expanded.get(key):
            raise UserError(f"the expanded tokenizer changes the base's {key}; expansion must only append")
    old_merges = [list(m) if isinstance(m, list) else m.split(" ", 1) for m in base["model"]["merges"]]
    new_merges = [list(m) if isinstance(m, list) else m.split(" ", 1) for m in expanded["model"]["merges"]]
    if new_merges[: len(old_merges)] != old_merges:
        raise UserError("the expanded tokenizer reorders the base's merges; expansion must only append")


def _strip_space_pieces(tokenizer: Any, ids: list[int]) -> list[int]:
    """Drop leading pieces that are only a word-boundary marker (SentencePiece's dummy-prefix ``▁``).

    Otherwise ``subword_first`` would give nearly every word-initial token the row of ``▁``.
    """
    while len(ids) > 1 and not tokenizer.decode(ids[:1]).strip():
        ids = ids[1:]
    return ids


def new_rows(method: str, old_rows: torch.Tensor, pieces: list[list[int]], seed: int = 0) -> torch.Tensor:
    """Rows for the new tokens (``[len(pieces), hidden]``, in ``old_rows``' dtype), computed in fp32."""
    old = old_rows.float()
    mean = old.mean(dim=0)
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randn(len(pieces), old.shape[1], generator=generator) * old.std()
    elif method == "mean":
        rows = mean.expand(len(pieces), -1)
    elif method == "subword_mean":
        rows = torch.stack([old[p].mean(dim=0) if p else mean for p in pieces])
    elif method == "subword_first":
        rows = torch.stack([old[p[0]] if p else mean for p in pieces])
    else:
        raise UserError(f"unknown initialisation method {method!r}; choose one of {', '.join(METHODS)}")
    return rows.to(old_rows.dtype)


def resize_table(
    table: torch.Tensor,
    expansion: Expansion,
    method: str,
    rows: int,
    seed: int = 0,
    shift: torch.Tensor | None = None,
    added: torch.Tensor | None = None,
) -> torch.Tensor:
    """``table``'s old rows, the new rows (``added`` when given, else by ``method``; plus ``shift``,
    a logit calibration), then zero padding up to ``rows`` in total."""
    if expansion.old_size > table.shape[0]:
        raise UserError(
            f"table has {table.shape[0]} rows, fewer than the base vocabulary {expansion.old_size}"
        )
    if rows < expansion.new_size:
        raise UserError(f"target of {rows} rows cannot hold {expansion.new_size} tokens")
    old = table[: expansion.old_size]
    added = new_rows(method, old, expansion.pieces, seed) if added is None else added.to(old.dtype)
    if shift is not None:
        added = (added.float() + shift).to(old.dtype)
    padding = table.new_zeros(rows - expansion.new_size, table.shape[1])
    return torch.cat([old, added, padding])


def resize_bias(
    bias: torch.Tensor, expansion: Expansion, method: str, rows: int, seed: int = 0
) -> torch.Tensor:
    """An LM-head bias (Phi) grown like a table of one column: with ``subword_mean`` a new token's
    bias is its pieces' mean bias, so that its whole logit starts at the mean of theirs."""
    return resize_table(bias[:, None], expansion, method, rows, seed)[:, 0]
