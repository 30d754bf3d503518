"""Each document's UTF-8 size, kept beside its dataset: ``<prefix>.doc_bytes.npy``.

Bits per byte divides a text's negative log-likelihood by its UTF-8 bytes, which must be the
documents' own: tokens cannot always give them back (normalisers, SentencePiece's dummy-prefix
space, dropped characters). Preprocessing records one int64 per document, in dataset order, and
validation reads the sizes of exactly the documents it scores. A dataset made elsewhere (Megatron-
LM's own script) has no such file; its validation then reports loss without bits per byte.
Shards write raw int64 files while they stream; the merged file is a NumPy ``.npy``, streamed
from them so that memory stays flat for any number of documents.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import numpy as np

from megacpt.atomic import atomic_open

SUFFIX = ".doc_bytes.npy"
SHARD_SUFFIX = ".doc_bytes"


def path_of(prefix: str | os.PathLike[str]) -> str:
    return os.fspath(prefix) + SUFFIX


class ShardDocBytes:
    """Appends document sizes to ``<prefix>.doc_bytes`` (raw int64), complete only after ``finalize``."""

    def __init__(self, prefix: str) -> None:
        self.path = prefix + SHARD_SUFFIX
        self._partial = self.path + ".partial"
        self._file = open(self._partial, "wb")  # noqa: SIM115 (closed by finalize or abort)

    def add(self, sizes: np.ndarray) -> int:
        """Record documents' sizes in bytes; returns their sum."""
        np.asarray(sizes, dtype=np.int64).tofile(self._file)
        return int(sizes.sum())

    def finalize(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._file.close()
        if os.path.exists(self._partial):
            os.remove(self._partial)


def merge(output_prefix: str, shard_prefixes: Sequence[str]) -> None:
    """Concatenate shards' raw sizes into ``output_prefix``'s ``.npy`` (written under a temporary name),
    streamed through a small buffer: a memory map of the output would hold 8 bytes of every document
    in the process's memory until written back."""
    counts = [os.path.getsize(p + SHARD_SUFFIX) // 8 for p in shard_prefixes]
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype("<i8")),
        "fortran_order": False,
        "shape": (sum(counts),),
    }
    with atomic_open(path_of(output_prefix), "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        for prefix in shard_prefixes:
            with open(prefix + SHARD_SUFFIX, "rb") as shard:
                shutil.copyfileobj(shard, out, 1 << 22)


def read(prefix: str | os.PathLike[str]) -> np.ndarray | None:
    """The sizes of ``prefix``'s documents (memory-mapped), or None when the dataset has no such file."""
    path = path_of(prefix)
    if not os.path.isfile(path):
        return None
    return np.load(path, mmap_mode="r")
