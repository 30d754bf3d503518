"""Exact and near-duplicate removal that scales out: datatrove's multi-stage MinHash, with character
shingles and a cluster stage that keeps the first copy in input order.

datatrove (the FineWeb pipeline) is the well-kept engine for this on Slurm clusters: each task writes
its documents' MinHash signatures, sorted, one file per LSH band, in the format of datatrove's
``MinhashDedupSignature`` (``Fingerprints``); one task per band merges the sorted files and writes
the pairs that share the band, in the format of datatrove's ``MinhashDedupBuckets`` (``BandPairs``);
one task joins the pairs into clusters (``FirstCopies``, ours). No stage holds more than one task's
documents, a bounded block of records or pairs, and, in the cluster stage, a few bytes per document
and per band run in typed arrays (datatrove's own cluster stage holds a Python dict entry per
document with a duplicate). Ours differs from datatrove's stock stages where those do not serve
Korean or Japanese, or make the result depend on the task count:

- shingles are character n-grams of the whitespace-collapsed text (Korean and Japanese have no word
  boundaries to tokenise), hashed with the signature in C++ (``csrc/clean_kernels.cpp``); datatrove's default word shingles need spaCy or
  kiwipiepy per language and its default normalisation decomposes Hangul into jamo;
- the signatures and band pairs are computed on whole arrays (C++ and numpy) where datatrove's stages
  handle one document, or one record, at a time in Python: those were most of the dedup stages' time
  (``tests/clean/test_clean_pipeline.py`` checks the band pairs against ``MinhashDedupBuckets``);
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

import collections
import contextlib
import hashlib
import heapq
import itertools
import os
import shutil
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.utils.hashing import HashConfig
from datatrove.utils.typeshelper import StatHints

import megacpt.clean._kernels as _kernels


def exact_key(flat: str) -> bytes:
    """The content hash of a text with its whitespace collapsed (``" ".join(text.split())``)."""
    return hashlib.blake2b(flat.encode("utf-8"), digest_size=16).digest()


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


def record_dtype(num_perm: int) -> np.dtype:
    """One kept document's fingerprint: its position, exact key and whole MinHash signature."""
    return np.dtype([("position", "<u8"), ("key", "V16"), ("signature", "<u4", (num_perm,))])


KEY_DTYPE = np.dtype([("key", "V16"), ("position", "<u8"), ("index", "<u4")])  # index: in the task


class Fingerprints(PipelineStep):
    """Per task: ``records/RANK.bin`` (each document's position, exact key and MinHash signature, in
    the task's order), ``keys/RANK.bin`` (exact keys sorted, for the exact merge) and, when
    near-duplicate removal is on, datatrove's band files for ``MinhashDedupBuckets``
    (``signatures/bucket_BBB/RANK.minhash.sig``: per band, each document's values in the band and its
    index in the task, as ``MinhashDedupSignature`` writes them, sorted)."""

    name = "🔑 fingerprints"
    type = "🫂 - DEDUP"

    def __init__(self, work: Path, config: MinhashConfig, near: bool) -> None:
        super().__init__()
        self.work, self.config, self.near = work, config, near
        self.num_perm = config.num_buckets * config.hashes_per_bucket
        draws = np.random.default_rng(config.seed).integers(
            0, 1 << 63, size=(2, self.num_perm), dtype=np.uint64
        )
        self._multipliers = draws[0] * np.uint64(2) + np.uint64(1)  # odd 64-bit multipliers
        self._offsets = draws[1]

    def signature(self, flat: str) -> np.ndarray:
        """Per permutation, the least ``(a * x + b) >> 32`` (mod 2**64) over the low 32 bits x of the
        hashes of the character n-grams of ``flat``, the text with its whitespace collapsed."""
        return _kernels.minhash(flat, self.config.n_grams, self._multipliers, self._offsets)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        dtype = record_dtype(self.num_perm)
        for folder in ("records", "keys"):
            (self.work / folder).mkdir(parents=True, exist_ok=True)
        records_path = self.work / "records" / f"{rank:05d}.bin"
        no_signature = np.full(
            self.num_perm, np.iinfo(np.uint32).max, "<u4"
        )  # without near-duplicate removal
        with open(records_path, "wb") as out:
            for doc in data:
                with self.track_time():
                    flat = " ".join(doc.text.split())
                    signature = self.signature(flat) if self.near else no_signature
                    out.write(doc.metadata["position"].to_bytes(8, "little") + exact_key(flat))
                    out.write(signature.tobytes())
                self.stat_update(StatHints.total)
        records = np.fromfile(records_path, dtype)
        if self.near:
            self._write_bands(records["signature"], rank)
        keys = np.empty(len(records), KEY_DTYPE)
        keys["key"], keys["position"], keys["index"] = (
            records["key"],
            records["position"],
            np.arange(len(records)),
        )
        keys.sort(order=("key", "position"))
        keys.tofile(self.work / "keys" / f"{rank:05d}.bin")
        return iter(())

    def _write_bands(self, signatures: np.ndarray, rank: int) -> None:
        """Per band, rows of the band's values and the document's index in the task, sorted."""
        rows = self.config.hashes_per_bucket
        index = np.arange(len(signatures), dtype="<u4")
        for band in range(self.config.num_buckets):
            table = np.column_stack([signatures[:, band * rows : (band + 1) * rows], index]).astype("<u4")
            path = self.work / "signatures" / f"bucket_{band:03d}" / f"{rank:05d}.minhash.sig"
            path.parent.mkdir(parents=True, exist_ok=True)
            table[np.lexsort(table.T[::-1])].tofile(path)


def _blocks(path: Path, dtype: np.dtype, rows: int = 1 << 16) -> Iterator[np.ndarray]:
    """``path``'s records, ``rows`` at a time, read rather than mapped: the pages of a mapping stay
    counted in the process's memory once touched, so a pass over a corpus-sized file would grow it."""
    total = path.stat().st_size // dtype.itemsize
    for start in range(0, total, rows):
        yield np.fromfile(path, dtype, count=min(rows, total - start), offset=start * dtype.itemsize)


def _sorted_keys(path: Path, task: int, rows: int) -> Iterator[tuple[bytes, int, int, int]]:
    for block in _blocks(path, KEY_DTYPE, rows):
        for key, pos, index in zip(
            block["key"].tolist(), block["position"].tolist(), block["index"].tolist(), strict=True
        ):
            yield key, pos, task, index


class _RowFile:
    """A file of rows of ``width`` little-endian uint32, sliced by reading just those rows."""

    def __init__(self, path: Path, width: int) -> None:
        self.path, self.width = path, width
        self.rows = path.stat().st_size // (4 * width)

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop = rows.start, min(rows.stop, self.rows)
        count = max(stop - start, 0) * self.width
        return np.fromfile(self.path, "<u4", count=count, offset=start * 4 * self.width).reshape(
            -1, self.width
        )


class BandPairs(PipelineStep):
    """One task per band: the pairs of documents whose values in the band are equal and who are
    neighbours in (values, task, index) order, written as datatrove's ``MinhashDedupBuckets`` writes
    them (``buckets/BBBBB_00.dups``: task and index of the one, task and index of the next, four
    ``<u4``). Ours merges the tasks' sorted band files in numpy blocks, a bounded number of records
    at a time; datatrove's pushes every record through a heap of Python objects (most of that
    stage's time), and skips a record whose first value is 2**32 - 1, which ours keeps."""

    name = "🪣 band pairs"
    type = "🫂 - DEDUP"

    def __init__(self, work: Path, config: MinhashConfig, records_in_memory: int = 1 << 18) -> None:
        super().__init__()
        self.work, self.records_in_memory = work, records_in_memory
        self.bands, self.rows = config.num_buckets, config.hashes_per_bucket

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        folder = self.work / "signatures" / f"bucket_{rank:03d}"
        files = sorted(folder.glob("*.minhash.sig"))
        tasks = np.array([int(path.name.split(".")[0]) for path in files], np.uint32)
        tables = [_RowFile(path, self.rows + 1) for path in files]
        (self.work / "buckets").mkdir(exist_ok=True)
        with self.track_time(), open(self.work / "buckets" / f"{rank:05d}_00.dups", "wb") as out:
            for chunk in _merged(tables, tasks, max(1, self.records_in_memory // max(len(files), 1))):
                same = (chunk[1:, : self.rows] == chunk[:-1, : self.rows]).all(axis=1)
                ends = np.flatnonzero(same)
                pairs = np.stack(
                    [chunk[ends, -2], chunk[ends, -1], chunk[ends + 1, -2], chunk[ends + 1, -1]], axis=1
                )
                out.write(pairs.astype("<u4").tobytes())
                self.stat_update("total_matches", value=len(ends))
        return iter(())


def _merged(tables: list[_RowFile], tasks: np.ndarray, block: int) -> Iterator[np.ndarray]:
    """The rows of ``tables`` (each sorted: a band's values, then an index) in (values, task, index)
    order, as rows of values, task, index; each chunk begins with the last row of the one before.
    ``block`` rows of each table are read at a time; a chunk ends at the least of the last rows read
    among the tables with rows left, which every row not read yet comes after."""
    starts = np.zeros(len(tables), np.int64)
    last: np.ndarray | None = None
    while True:
        parts, bound = [], None
        for t, table in enumerate(tables):
            piece = table[int(starts[t]) : int(starts[t]) + block]
            if not len(piece):
                continue
            task, which = np.full(len(piece), tasks[t], np.uint32), np.full(len(piece), t, np.uint32)
            parts.append(np.column_stack([piece[:, :-1], task, piece[:, -1], which]))
            if starts[t] + len(piece) < len(table):
                key = (*piece[-1, :-1].tolist(), int(tasks[t]), int(piece[-1, -1]))
                bound = key if bound is None or key < bound else bound
        if not parts:
            return
        rows = np.concatenate(parts)
        rows = rows[np.lexsort(rows[:, :-1].T[::-1])]
        if bound is not None:  # (task, index) names one row
            rows = rows[: np.flatnonzero((rows[:, -3] == bound[-2]) & (rows[:, -2] == bound[-1]))[0] + 1]
        starts += np.bincount(rows[:, -1], minlength=len(tables))
        rows = rows[:, :-1]
        if last is not None:
            rows = np.concatenate([last[None], rows])
        last = rows[-1]
        yield rows


REMOVAL_DTYPE = np.dtype([("index", "<u4"), ("first", "<u8"), ("exact", "u1"), ("jaccard", "<f4")])
PAIR_DTYPE = np.dtype([("task", "<u4"), ("index", "<u4"), ("next_task", "<u4"), ("next_index", "<u4")])
RUN_EDGE = 100  # a document in a long band run is compared with the run's first and last 100 before it
CHUNK_DOCS = 1 << 16  # documents whose band-run memberships are sorted and walked at once
KEYS_IN_MEMORY = 1 << 16  # exact keys read ahead, over all tasks' streams


class FirstCopies(PipelineStep):
    """One task: decide, in input order, which documents repeat an earlier one, as the in-memory index
    did: a document goes when an earlier one has the same exact key, or when an earlier document
    that stays shares a band with it and the estimated Jaccard similarity of the two reaches the
    threshold (the most similar such one is named). Writes each task's removals
    (``removals/RANK.npy``: index in the task, the earlier copy's position, whether the text is the
    same, the estimated Jaccard similarity).

    The buckets stage writes each band's runs of equal values as pairs of neighbours, in
    (task, index) order, which the contiguous task blocks make the input order: the runs are rebuilt
    from the pairs, so the candidates, and the result, are the same for any task count. Documents
    are numbered in input order across tasks. Every file is streamed or read in blocks of bounded
    size: the band runs' memberships are spread to files by range of documents (at most 256 files,
    each of at least ``CHUNK_DOCS`` documents) and walked one range at a time; the signatures
    compared are read one by one; removals go to disk in blocks. What is held for the whole corpus
    is one byte per document, eight bytes per band run of two or more documents (its first and last
    documents that stay) and twelve per later document that stays in a run (the chain of them),
    twice that past 2**31 documents: a few percent of the records written for the corpus."""

    name = "🫂 first copies"
    type = "🫂 - DEDUP"

    def __init__(
        self,
        work: Path,
        tasks: int,
        num_perm: int,
        exact: bool,
        near: bool,
        threshold: float,
        pairs_in_memory: int = 1 << 16,
    ) -> None:
        super().__init__()
        self.work, self.tasks, self.num_perm, self.exact, self.near = work, tasks, num_perm, exact, near
        self.threshold, self.pairs_in_memory = threshold, pairs_in_memory

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        signatures = _Signatures(
            [self.work / "records" / f"{t:05d}.bin" for t in range(self.tasks)], self.num_perm
        )
        base = signatures.base
        stays = np.ones(int(base[-1]), dtype=bool)  # by document number (input order)
        folder = self.work / "removals"
        shutil.rmtree(folder, ignore_errors=True)  # a stage that was stopped part-way starts again
        folder.mkdir()
        removals = _Removals(folder, self.tasks)
        if self.exact:
            rows = max(64, KEYS_IN_MEMORY // self.tasks)
            streams = [_sorted_keys(self.work / "keys" / f"{t:05d}.bin", t, rows) for t in range(self.tasks)]
            last_key, first = None, -1
            for key, pos, task, index in heapq.merge(*streams):
                if key == last_key:
                    stays[base[task] + index] = False
                    removals.add(task, index, first, True, 1.0)
                else:
                    last_key, first = key, pos
        if self.near:
            try:
                self._near(signatures, stays, removals)
            finally:
                signatures.close()
        removals.save()
        return iter(())

    def _membership_files(self, base: np.ndarray, stays: np.ndarray) -> tuple[list[Path], int]:
        """Every (document, run) of the band runs of equal values that hold two or more documents once
        the exact copies are gone (no other run can give a comparison), spread to files by range of
        documents: the files, in input order, and the number of runs, numbered from 0. Runs are
        rebuilt from the buckets stage's pairs of neighbours, a block at a time; the run open at the
        end of a block keeps its number, or, while it has one document that stays, waits with it."""
        span = max(CHUNK_DOCS, -(-int(base[-1]) // 256))  # at most 256 files open at once
        folder = self.work / "memberships"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        paths = [folder / f"{k:05d}.bin" for k in range(max(1, -(-int(base[-1]) // span)))]
        numbered = 0
        with contextlib.ExitStack() as stack:
            outs = [stack.enter_context(open(path, "wb")) for path in paths]
            for dups in sorted((self.work / "buckets").glob("*.dups")):
                previous, next_run = -1, 0  # the second document of the pair before; the band's runs
                open_run, open_number = -1, -1  # the run open at the end of the block, its number
                waiting = np.empty((2, 0), np.int64)  # its one document that stays, while it has no number
                for pairs in _blocks(dups, PAIR_DTYPE, self.pairs_in_memory):
                    first = base[pairs["task"]] + pairs["index"]
                    second = base[pairs["next_task"]] + pairs["next_index"]
                    starts = np.r_[first[0] != previous, first[1:] != second[:-1]]  # a pair opening a run
                    run_ids = next_run - 1 + np.cumsum(starts)
                    docs = np.concatenate([waiting[0], first[starts], second])
                    runs = np.concatenate([waiting[1], run_ids[starts], run_ids])
                    keep = stays[docs]
                    docs, runs = docs[keep], runs[keep]
                    found, inverse, sizes = np.unique(runs, return_inverse=True, return_counts=True)
                    numbers = np.full(len(found), -1, np.int64)
                    numbers[found == open_run] = open_number
                    fresh = (sizes >= 2) & (numbers < 0)
                    numbers[fresh] = numbered + np.arange(int(fresh.sum()))
                    numbered += int(fresh.sum())
                    if run_ids[-1] != open_run:
                        open_run, open_number = int(run_ids[-1]), -1
                    open_number = max(open_number, int(numbers[found == open_run].max(initial=-1)))
                    numbers = numbers[inverse]
                    self._spread(outs, span, docs[numbers >= 0], numbers[numbers >= 0])
                    waiting = np.stack([docs, runs])[:, (runs == open_run) & (numbers < 0)]
                    next_run, previous = int(run_ids[-1]) + 1, int(second[-1])
        return paths, numbered

    @staticmethod
    def _spread(outs: list, span: int, docs: np.ndarray, runs: np.ndarray) -> None:
        """Append each (document, run) to the file of its range of ``span`` documents."""
        files = docs // span
        for k in np.unique(files).tolist():
            here = files == k
            np.stack([docs[here], runs[here]], axis=1).astype("<i8").tofile(outs[k])

    def _near(self, signatures: _Signatures, stays: np.ndarray, removals: _Removals) -> None:
        """In input order, each document in a band run against the earlier documents of its runs that
        stay (the first and last ``RUN_EDGE`` of them); the ones that stay join their runs.

        A run's first document that stays is its head; the later ones are chained (each links to the
        one before it in its run), so what is held is a few bytes per run and per later document
        that stays, in typed arrays."""
        paths, runs = self._membership_files(signatures.base, stays)
        typecode = "i" if max(len(stays), sum(path.stat().st_size for path in paths) // 16) < 1 << 31 else "q"
        heads = array(typecode, [-1]) * runs  # per run: its first document that stays
        tails = array(typecode, [-1]) * runs  # per run: its last later document that stays, in the chain
        # the chain of later documents that stay: each one, the one before it in its run, its rank there
        chained, before, ranks = array(typecode), array(typecode), array(typecode)
        edges: dict[int, int] = {}  # runs with RUN_EDGE - 1 later documents or more: that one's place

        def walk(link: int, steps: int) -> list[int]:
            found: list[int] = []
            while link >= 0 and len(found) < steps:
                found.append(chained[link])
                link = before[link]
            return found

        def compared(run: int) -> list[int]:
            """The run's first and last ``RUN_EDGE`` documents that stay (all of them when no more)."""
            tail = tails[run]
            if tail < 0 or ranks[tail] < 2 * RUN_EDGE:
                return [heads[run], *walk(tail, 2 * RUN_EDGE)]
            return [heads[run], *walk(edges.get(run, -1), RUN_EDGE - 1), *walk(tail, RUN_EDGE)]

        for path in paths:
            memberships = np.fromfile(path, "<i8").reshape(-1, 2)
            path.unlink()
            memberships = memberships[np.lexsort((memberships[:, 1], memberships[:, 0]))]
            doc, run = memberships[:, 0], memberships[:, 1]
            bounds = (
                [*np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]]).tolist(), len(doc)] if len(doc) else [0]
            )
            for begin, end in itertools.pairwise(bounds):
                number = int(doc[begin])
                my_runs = run[begin:end].tolist()
                others: set[int] = set()
                for r in my_runs:
                    if heads[r] >= 0:
                        others.update(compared(r))
                task, mine = signatures.row(number)
                best: tuple[float, int] | None = None
                for other in sorted(others):
                    theirs = signatures.row(other)[1]
                    jaccard = float(np.mean(mine["signature"] == theirs["signature"]))
                    if jaccard >= self.threshold and (best is None or jaccard > best[0]):
                        best = (jaccard, int(theirs["position"]))
                if best is not None:
                    stays[number] = False
                    removals.add(task, number - int(signatures.base[task]), best[1], False, best[0])
                    continue
                for r in my_runs:
                    if heads[r] < 0:
                        heads[r] = number
                        continue
                    tail = tails[r]
                    chained.append(number)
                    before.append(tail)
                    ranks.append(1 + (ranks[tail] if tail >= 0 else 0))
                    tails[r] = len(chained) - 1
                    if ranks[-1] == RUN_EDGE - 1:
                        edges[r] = tails[r]


class _Signatures:
    """The tasks' records by document number (input order), each read when asked for (``os.pread``):
    nothing of the files stays in this process's memory, and at most ``open_files`` are open."""

    def __init__(self, paths: list[Path], num_perm: int, open_files: int = 64) -> None:
        self.paths, self.dtype, self.open_files = paths, record_dtype(num_perm), open_files
        sizes = [path.stat().st_size // self.dtype.itemsize for path in paths]
        self.base = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._fds: collections.OrderedDict[int, int] = collections.OrderedDict()

    def row(self, number: int) -> tuple[int, np.void]:
        """(task, record) of document ``number``."""
        task = int(np.searchsorted(self.base, number, side="right")) - 1
        fd = self._fds.pop(task, None)
        if fd is None:
            if len(self._fds) >= self.open_files:
                os.close(self._fds.popitem(last=False)[1])
            fd = os.open(self.paths[task], os.O_RDONLY)
        self._fds[task] = fd
        size = self.dtype.itemsize
        return task, np.frombuffer(os.pread(fd, size, (number - int(self.base[task])) * size), self.dtype)[0]

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])


class _Removals:
    """Every task's removals, in compact arrays written to ``removals/TASK.part`` whenever ``block``
    are held, then sorted into ``removals/TASK.npy``."""

    def __init__(self, folder: Path, tasks: int, block: int = 1 << 18) -> None:
        self.folder, self.tasks, self.block = folder, tasks, block
        self._start()

    def _start(self) -> None:
        self.task, self.index, self.first = array("I"), array("I"), array("Q")
        self.exact, self.jaccard = array("B"), array("f")

    def add(self, task: int, index: int, first: int, exact: bool, jaccard: float) -> None:
        self.task.append(task)
        self.index.append(index)
        self.first.append(first)
        self.exact.append(exact)
        self.jaccard.append(jaccard)
        if len(self.index) >= self.block:
            self._flush()

    def _flush(self) -> None:
        tasks = np.frombuffer(self.task, np.uint32)
        table = np.zeros(len(tasks), REMOVAL_DTYPE)
        table["index"], table["first"] = (
            np.frombuffer(self.index, np.uint32),
            np.frombuffer(self.first, np.uint64),
        )
        table["exact"], table["jaccard"] = (
            np.frombuffer(self.exact, np.uint8),
            np.frombuffer(self.jaccard, np.float32),
        )
        for task in np.unique(tasks).tolist():
            with open(self.folder / f"{task:05d}.part", "ab") as out:
                table[tasks == task].tofile(out)
        self._start()

    def save(self) -> None:
        self._flush()
        for task in range(self.tasks):
            part = self.folder / f"{task:05d}.part"
            found = np.fromfile(part, REMOVAL_DTYPE) if part.exists() else np.empty(0, REMOVAL_DTYPE)
            np.save(self.folder / f"{task:05d}.npy", np.sort(found, order="index"))
            part.unlink(missing_ok=True)
