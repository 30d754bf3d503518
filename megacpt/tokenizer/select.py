"""Choose the new tokens: EEVE's count-and-prune loop over the trained candidates.

Start from the candidates the base lacks, plus frequent single characters the base lacks; count
how often the merged tokenizer actually emits each new token on the training text; drop those
under ``min_frequency`` (characters that passed ``char_min_frequency`` stay), keep the pieces
the survivors are merged from, apply the optional cap, and repeat until the set stops changing.
Counting uses the merged tokenizer itself, so a token that exists but is never produced (because
other tokens win the merges) is pruned like a rare one.

A byte-level trainer also learns tokens that join whole characters to the first bytes of the next
one (``を`` plus the lead byte of a kanji): such a token predicts a particle together with a third of
an unknown character. ``whole_characters`` keeps them out (pieces inside one character stay: they
build the characters the base lacks). On SmolLM2 it starts 0.04× the base's bits per byte better
on Japanese, but after the quickstart's 20 steps Japanese is equal and Korean 0.02 worse (three
seeds; ``bench/results/expansion_token_count.md``), so it is off by default.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from megacpt.tokenizer.base import BaseVocab, Parts
from megacpt.tokenizer.config import SelectConfig
from megacpt.tokenizer.scripts import ScriptFilter

CHUNK = 4096  # documents encoded at a time, so counting a large corpus never holds all its ids


@dataclass
class Selection:
    """The chosen tokens in append order, how often each was emitted, and the rounds it took."""

    keys: list[str]
    frequencies: dict[str, int]
    rounds: int
    converged: bool


def closure(chosen: set[str], parts: dict[str, Parts]) -> set[str]:
    """``chosen`` plus, recursively, the new tokens they are merged from."""
    out, stack = set(), list(chosen)
    while stack:
        key = stack.pop()
        if key in out:
            continue
        out.add(key)
        stack.extend(p for p in parts.get(key) or () if p in parts)
    return out


def _capped(ranked: list[str], parts: dict[str, Parts], cap: int) -> set[str]:
    """Take tokens by rank while the set (closed under parts) stays within ``cap``."""
    kept: set[str] = set()
    for key in ranked:
        grown = kept | closure({key}, parts)
        if len(grown) <= cap:
            kept = grown
    return kept


def crosses_characters(token: bytes) -> bool:
    """Whether ``token`` (UTF-8 bytes, after an optional leading space) holds bytes of two characters
    without being whole characters: ``"を".encode() + b"\\xe7"``, or the end of one character and the
    next."""
    body = token[1:] if token.startswith(b" ") else token
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        starts = [i for i, b in enumerate(body) if b >> 6 != 0b10]  # bytes that begin a character
        return bool(starts) and starts != [0]
    return False


def frequent_chars(
    texts: Sequence[str], base: BaseVocab, min_count: int, scripts: ScriptFilter | None = None
) -> list[str]:
    """Single characters seen at least ``min_count`` times that the base has no token for (and that
    ``scripts`` admits), most frequent first."""
    counts = Counter(c for text in texts for c in text)
    out = []
    for char, count in counts.most_common():
        if count < min_count:
            break
        if scripts is not None and not scripts.admits(char.encode("utf-8")):
            continue
        key = base.key(char.encode("utf-8"))
        if key is not None and not base.in_base(key):
            out.append(key)
    return out


def count_new(base: BaseVocab, texts: Sequence[str], keys: Sequence[str]) -> dict[str, int]:
    """How often each of ``keys`` (reachable, in append order) is emitted on ``texts``."""
    counts: Counter[int] = Counter()
    for start in range(0, len(texts), CHUNK):
        for ids in base.encode(texts[start : start + CHUNK], keys):
            counts.update(i for i in ids if i >= base.base_size)
    return {key: counts[base.base_size + i] for i, key in enumerate(keys)}


def select_tokens(
    base: BaseVocab,
    candidates: Sequence[bytes],
    texts: Sequence[str],
    cfg: SelectConfig,
    cap: int | None,
    scripts: ScriptFilter | None = None,
) -> Selection:
    """Run the selection loop; ``cap`` bounds the number of new tokens (``None``: no bound), and
    only candidates that ``scripts`` admits take part."""
    chars = frequent_chars(texts, base, cfg.char_min_frequency, scripts)
    admitted = [
        c
        for c in candidates
        if not (cfg.whole_characters and crosses_characters(c)) and (scripts is None or scripts.admits(c))
    ]
    trained = [k for k in (base.key(c) for c in admitted) if k is not None and not base.in_base(k)]
    pool = list(dict.fromkeys(chars + trained))
    protected = set(chars)
    parts = base.reachable(pool)
    current = list(parts)
    for round_no in range(1, cfg.max_rounds + 1):
        freqs = count_new(base, texts, current)
        keep = {k for k in current if freqs[k] >= cfg.min_frequency or k in protected}
        keep = closure(keep, parts)
        if cap is not None and len(keep) > cap:
            ranked = sorted(keep, key=lambda k: -freqs[k])
            keep = _capped(ranked, parts, cap)
        parts = base.reachable([k for k in current if k in keep])
        if list(parts) == current:
            return Selection(current, freqs, round_no, converged=True)
        current = list(parts)
    return Selection(current, count_new(base, texts, current), cfg.max_rounds, converged=False)
