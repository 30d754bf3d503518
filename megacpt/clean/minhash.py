"""Exact and near-duplicate removal that scales out: datatrove's multi-stage MinHash, with character
shingles and a cluster stage that keeps the first copy in input order.

datatrove (the FineWeb pipeline) is the well-kept engine for this on Slurm clusters: each task writes
its documents' MinHash signatures, sorted, one file per LSH band (``Fingerprints``, a
``MinhashDedupSignature``); one task per band merges the sorted files and writes the pairs that share
the band (``MinhashDedupBuckets``, used as is); one task joins the pairs into clusters
(``FirstCopies``, ours). No stage holds more than one task's documents or the duplicates found, so
memory does not grow with the corpus. Ours differs from datatrove's stock stages where those do not
serve Korean or Japanese, or make the result depend on the task count:

- shingles are character n-grams of the whitespace-collapsed text (Korean and Japanese have no word
  boundaries to tokenise), hashed in numpy; datatrove's default word shingles need spaCy or
  kiwipiepy per language and its default normalisation decomposes Hangul into jamo;
- the MinHash permutations are multiply-shift hashes of the shingles' low 32 bits (Dietzfelbinger's
  universal family: one multiply, add and shift in 64 bits), 2.5x faster than datatrove's modulo a
  Mersenne prime on the same shingles, written as datatrove's 32-bit signatures;
- the cluster stage keeps the document earliest in the input (datatrove's keeps the root of a
  union by size, which depends on how the input was split into tasks);
- exact duplicates (whitespace-insensitive content hash) join the clusters through a sorted merge of
  each task's hashes, and every removal names the first copy, with the estimated Jaccard similarity.

A pair is a near duplicate when its signatures agree on a whole band and the share of equal values
over the whole signatures (the estimated Jaccard similarity) reaches the threshold; bands and rows
are chosen for the threshold as datasketch's MinHashLSH chooses them (equal weight to false
positives and false negatives). Within a band, datatrove pairs each document with the next in
(task, index) order, which the contiguous task blocks make the input order: the pairs checked, and so
the clusters, are the same for any task count.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)  # MurmurHash3's finaliser
_BASE = np.uint64(0x100000001B3)


def exact_key(text: str) -> bytes:
    """Identical after whitespace collapsing => same key."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band), rows * bands <= num_perm, whose S-curve best separates Jaccard similarity
    above ``threshold`` from below it (false positives and negatives weighed equally)."""
    grid = (np.arange(1000) + 0.5) / 1000

    def error(bands: int, rows: int) -> float:
        caught = 1 - (1 - grid**rows) ** bands
        return float(np.where(grid < threshold, caught, 1 - caught).sum() / 1000)

    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    return min(pairs, key=lambda pair: error(*pair))


def minhash_config(threshold: float, num_perm: int, shingle_chars: int) -> MinhashConfig:
    bands, rows = lsh_bands(threshold, num_perm)
    return MinhashConfig(
        n_grams=shingle_chars,
        num_buckets=bands,
        hashes_per_bucket=rows,
        # only the precision is used (the band files' 32-bit values): ``Fingerprints`` makes the shingles
        # and signatures itself, so datatrove's text normalisation and hash function never run; sha1
        # because the default xxhash is checked for at construction
        hash_config=HashConfig(hash_fc="sha1", precision=32),
    )


class CharacterTokenizer(WordTokenizer):
    """Every character of the whitespace-collapsed text a token: shingles of n tokens are the character
    n-grams that ``shingles`` hashes."""

    def word_tokenize(self, text: str) -> list[str]:
        return list(" ".join(text.split()))

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i in range(len(" ".join(text.split())))]

    def sent_tokenize(self, text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip()]


def shingles(text: str, n: int) -> np.ndarray:
    """64-bit hashes of the distinct character n-grams of ``text`` with its whitespace collapsed to
    single spaces (one n-gram of the whole text if it is shorter), as a (count, 1) array."""
    points = np.frombuffer(" ".join(text.split()).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = max(min(n, len(points)), 1)
    count = max(len(points) - n + 1, 1)
    hashes = np.zeros(count, dtype=np.uint64)
    for k in range(min(n, len(points))):
        hashes = hashes * _BASE + points[k : k + count]
    hashes ^= hashes >> np.uint64(33)
    hashes *= _MIX1
    hashes ^= hashes >> np.uint64(33)
    hashes *= _MIX2
    hashes ^= hashes >> np.uint64(33)
    return np.unique(hashes).reshape(-1, 1)


def record_dtype(num_perm: int) -> np.dtype:
    """One kept document's fingerprint: its position, exact key and whole MinHash signature."""
    return np.dtype([("position", "<u8"), ("key", "V16"), ("signature", "<u4", (num_perm,))])


KEY_DTYPE = np.dtype([("key", "V16"), ("position", "<u8"), ("index", "<u4")])  # index: in the task


class Fingerprints(MinhashDedupSignature):
    """Per task: datatrove's band files for ``MinhashDedupBuckets`` (when near-duplicate removal is on),
    plus ``records/RANK.bin`` (each document's position, exact key and signature, in the task's
    order) and ``keys/RANK.bin`` (exact keys sorted, for the exact merge)."""

    name = "🔑 fingerprints"

    def __init__(self, work: Path, config: MinhashConfig, near: bool) -> None:
        super().__init__(str(work / "signatures"), config, language=CharacterTokenizer())
        self.work = work
        self.near = near
        self._current: tuple[np.ndarray, list[list[int]]] | None = None
        draws = np.random.default_rng(config.seed).integers(
            0, 1 << 63, size=(2, self.num_hashes), dtype=np.uint64
        )
        self._multipliers = draws[0] * np.uint64(2) + np.uint64(1)  # odd 64-bit multipliers
        self._offsets = draws[1]

    def minhash(self, doc_shingles: np.ndarray) -> np.ndarray:
        """The signature: per permutation, the least ``(a * x + b) >> 32`` over the shingles x (mod 2**64),
        taken over blocks of shingles so that a long document needs no more than a short one."""
        least = np.full(self.num_hashes, np.iinfo(np.uint32).max, dtype=np.uint64)
        for start in range(0, len(doc_shingles), 4096):
            keys = doc_shingles[start : start + 4096] & np.uint64(0xFFFFFFFF)
            block = ((keys * self._multipliers + self._offsets) >> np.uint64(32)).min(axis=0)
            np.minimum(least, block, out=least)
        return least.astype(np.uint32)

    def get_shingles(self, text: str) -> np.ndarray:
        """The current document's shingles, computed once in ``run`` (datatrove asks right after)."""
        assert self._current is not None
        return self._current[0]

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        """The current document's signature, per band, computed once in ``run``."""
        assert self._current is not None
        return self._current[1]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        num_perm = self.num_hashes
        dtype = record_dtype(num_perm)
        (self.work / "records").mkdir(parents=True, exist_ok=True)
        (self.work / "keys").mkdir(parents=True, exist_ok=True)
        records_path = self.work / "records" / f"{rank:05d}.bin"
        empty = np.empty((0, 1), np.uint64)
        with open(records_path, "wb") as out:

            def recorded() -> Iterator[Any]:
                for doc in data:
                    doc_shingles = shingles(doc.text, self.config.n_grams) if self.near else empty
                    signature = self.minhash(doc_shingles)  # all ones without near-duplicate removal
                    bands = signature.reshape(self.config.num_buckets, self.config.hashes_per_bucket)
                    self._current = (doc_shingles, bands.tolist())
                    out.write(doc.metadata["position"].to_bytes(8, "little") + exact_key(doc.text))
                    out.write(signature.astype("<u4").tobytes())
                    yield doc

            if self.near:
                super().run(recorded(), rank, world_size)
            else:
                for _ in recorded():
                    pass
        records = (
            np.memmap(records_path, dtype, mode="r") if records_path.stat().st_size else np.empty(0, dtype)
        )
        keys = np.empty(len(records), KEY_DTYPE)
        keys["key"], keys["position"], keys["index"] = (
            records["key"],
            records["position"],
            np.arange(len(records)),
        )
        keys.sort(order=("key", "position"))
        keys.tofile(self.work / "keys" / f"{rank:05d}.bin")
        return iter(())


def _sorted_keys(path: Path, task: int) -> Iterator[tuple[bytes, int, int, int]]:
    keys = np.memmap(path, KEY_DTYPE, mode="r") if path.stat().st_size else np.empty(0, KEY_DTYPE)
    for start in range(0, len(keys), 65536):
        block = keys[start : start + 65536]
        for key, pos, index in zip(
            block["key"].tolist(), block["position"].tolist(), block["index"].tolist(), strict=True
        ):
            yield key, pos, task, index


REMOVAL_DTYPE = np.dtype([("index", "<u4"), ("first", "<u8"), ("exact", "u1"), ("jaccard", "<f4")])
RUN_EDGE = 100  # a document in a long band run is compared with the run's first and last 100 before it


class FirstCopies(PipelineStep):
    """One task: decide, in input order, which documents repeat an earlier one, as the in-memory index
    did: a document goes when an earlier one has the same exact key, or when an earlier document
    that stays shares a band with it and the estimated Jaccard similarity of the two reaches the
    threshold (the most similar such one is named). Writes each task's removals
    (``removals/RANK.npy``: index in the task, the earlier copy's position, whether the text is the
    same, the estimated Jaccard similarity).

    datatrove's buckets stage writes each band's runs of equal values as pairs of neighbours, in
    (task, index) order, which the contiguous task blocks make the input order: the runs are rebuilt
    from the pairs, so the candidates, and the result, are the same for any task count. Documents
    are numbered in input order across tasks; memory is one byte per document, 16 bytes per
    document in a band run (numpy arrays) and the lists of the runs' documents that stay; the
    signatures are read from the tasks' files."""

    name = "🫂 first copies"
    type = "🫂 - DEDUP"

    def __init__(
        self, work: Path, tasks: int, num_perm: int, exact: bool, near: bool, threshold: float
    ) -> None:
        super().__init__()
        self.work, self.tasks, self.num_perm, self.exact, self.near = work, tasks, num_perm, exact, near
        self.threshold = threshold

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        dtype = record_dtype(self.num_perm)
        records = []
        for task in range(self.tasks):
            path = self.work / "records" / f"{task:05d}.bin"
            records.append(np.memmap(path, dtype, mode="r") if path.stat().st_size else np.empty(0, dtype))
        base = np.concatenate([[0], np.cumsum([len(r) for r in records])]).astype(np.int64)
        stays = np.ones(int(base[-1]), dtype=bool)  # by document number (input order)
        removals = [_Removals() for _ in range(self.tasks)]
        if self.exact:
            streams = [_sorted_keys(self.work / "keys" / f"{t:05d}.bin", t) for t in range(self.tasks)]
            last_key, first = None, -1
            for key, pos, task, index in heapq.merge(*streams):
                if key == last_key:
                    stays[base[task] + index] = False
                    removals[task].add(index, first, True, 1.0)
                else:
                    last_key, first = key, pos
        if self.near:
            self._near(base, records, stays, removals)
        (self.work / "removals").mkdir(exist_ok=True)
        for task, found in enumerate(removals):
            np.save(self.work / "removals" / f"{task:05d}.npy", found.table())
        return iter(())

    def _memberships(self, base: np.ndarray, stays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(document, run) for every document of every band's runs of equal values, sorted by document
        (exact copies, already gone, left out): runs rebuilt from datatrove's pairs of neighbours."""
        docs, runs = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        next_run = 0
        for dups in sorted((self.work / "buckets").glob("*.dups")):
            pairs = np.fromfile(dups, dtype="<u4").reshape(-1, 4).astype(np.int64)
            if not len(pairs):
                continue
            first, second = base[pairs[:, 0]] + pairs[:, 1], base[pairs[:, 2]] + pairs[:, 3]
            starts = np.r_[True, first[1:] != second[:-1]]  # a pair that does not continue the run before
            run_ids = next_run + np.cumsum(starts) - 1
            docs += [first[starts], second]
            runs += [run_ids[starts], run_ids]
            next_run = int(run_ids[-1]) + 1
        doc, run = np.concatenate(docs), np.concatenate(runs)
        keep = stays[doc]
        doc, run = doc[keep], run[keep]
        order = np.lexsort((run, doc))
        return doc[order], run[order]

    def _near(
        self, base: np.ndarray, records: list[np.ndarray], stays: np.ndarray, removals: list[_Removals]
    ) -> None:
        """In input order, each document in a band run against the earlier documents of its runs that
        stay (the first and last ``RUN_EDGE`` of them); the ones that stay join their runs' lists."""
        doc, run = self._memberships(base, stays)
        staying: dict[int, list[int]] = {}  # run -> its documents that stay, in input order
        bounds = [*np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]]).tolist(), len(doc)] if len(doc) else [0]
        for begin, end in itertools.pairwise(bounds):
            number = int(doc[begin])
            my_runs = run[begin:end].tolist()
            others: set[int] = set()
            for r in my_runs:
                members = staying.get(r, [])
                others.update(members[:RUN_EDGE] + members[-RUN_EDGE:])
            task = int(np.searchsorted(base, number, side="right")) - 1
            mine = records[task][number - base[task]]
            best: tuple[float, int] | None = None
            for other in sorted(others):
                other_task = int(np.searchsorted(base, other, side="right")) - 1
                theirs = records[other_task][other - base[other_task]]
                jaccard = float(np.mean(mine["signature"] == theirs["signature"]))
                if jaccard >= self.threshold and (best is None or jaccard > best[0]):
                    best = (jaccard, int(theirs["position"]))
            if best is not None:
                stays[number] = False
                removals[task].add(number - int(base[task]), best[1], False, best[0])
            else:
                for r in my_runs:
                    staying.setdefault(r, []).append(number)


class _Removals:
    """One task's removals, in compact arrays."""

    def __init__(self) -> None:
        self.index, self.first, self.exact, self.jaccard = array("I"), array("Q"), array("B"), array("f")

    def add(self, index: int, first: int, exact: bool, jaccard: float) -> None:
        self.index.append(index)
        self.first.append(first)
        self.exact.append(exact)
        self.jaccard.append(jaccard)

    def table(self) -> np.ndarray:
        table = np.zeros(len(self.index), REMOVAL_DTYPE)
        table["index"], table["first"] = (
            np.frombuffer(self.index, np.uint32),
            np.frombuffer(self.first, np.uint64),
        )
        table["exact"], table["jaccard"] = (
            np.frombuffer(self.exact, np.uint8),
            np.frombuffer(self.jaccard, np.float32),
        )
        return np.sort(table, order="index")
