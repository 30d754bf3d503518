"""Exact and near-duplicate removal: a content hash, then MinHash-LSH from ``datasketch``.

``datasketch`` is the well-kept reference implementation of MinHash and LSH in Python. Shingles are
character n-grams of the whitespace-collapsed text, which work for Korean and Japanese (no word
boundaries) as well as for English. They are hashed with CRC-32 (C speed and the same in every
process; datasketch's default SHA-1 took half the signature time) before the MinHash permutations.
Signatures are computed in the worker processes; the index is queried and filled in the main
process in input order, so the first copy of a document is the one kept and the result does not
depend on the number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Callable

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from megacpt.errors import UserError

# datasketch's default permutation scheme; a signature rebuilt from hash values must name it.
SCHEME = "affine32"


def exact_key(text: str) -> bytes:
    """Identical after whitespace collapsing => same key."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


@functools.cache
def _permutations(num_perm: int, seed: int) -> np.ndarray:
    return MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations


def signature(text: str, num_perm: int, shingle_chars: int, seed: int = 1) -> np.ndarray:
    """The MinHash signature (``num_perm`` hash values) of ``text``'s character shingles."""
    flat = " ".join(text.split())
    n = min(shingle_chars, max(len(flat), 1))
    shingles = {flat[i : i + n].encode("utf-8") for i in range(max(len(flat) - n + 1, 1))}
    mh = MinHash(
        num_perm=num_perm,
        seed=seed,
        scheme=SCHEME,
        permutations=_permutations(num_perm, seed),
        hashfunc=zlib.crc32,
    )
    mh.update_batch(list(shingles))  # the minimum does not depend on the order
    return np.asarray(mh.hashvalues)


class Deduplicator:
    """Remembers what it has kept; says whether a new document repeats one of them."""

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        seed: int = 1,
        *,
        exact: bool = True,
        near: bool = True,
        where: Callable[[int], str] = lambda doc_no: f"line {doc_no}",
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise UserError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.seed = seed
        self.exact = exact
        self.near = near
        self.where = where  # how a message names the first copy
        self._exact: dict[bytes, int] = {}
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._sigs: dict[int, LeanMinHash] = {}

    def check(self, doc_no: int, key: bytes, sig: np.ndarray | None) -> tuple[str, str] | None:
        """``None`` to keep ``doc_no`` (and remember it), else (filter, reason) naming the first copy."""
        if self.exact:
            first = self._exact.get(key)
            if first is not None:
                return "exact_duplicate", f"same text as {self.where(first)}"
            self._exact[key] = doc_no
        if not self.near or sig is None:
            return None
        mh = LeanMinHash(seed=self.seed, hashvalues=sig, scheme=SCHEME)
        best = None
        for other in self._lsh.query(mh):
            sim = mh.jaccard(self._sigs[other])
            if sim >= self.threshold and (best is None or (sim, -other) > (best[0], -best[1])):
                best = (sim, other)
        if best is not None:
            return "near_duplicate", f"estimated Jaccard {best[0]:.2f} with {self.where(best[1])}"
        self._lsh.insert(doc_no, mh)
        self._sigs[doc_no] = mh
        return None
