"""Write, merge and read Megatron-core indexed datasets (``prefix.bin`` + ``prefix.idx``).

The one typed wrapper over the C++ extension ``megacpt.data._indexed_builder``: its writer streams
tokens to the ``.bin`` and spills the index to disk, so memory stays flat on any corpus, and it
renames files into place only when complete. The bytes are exactly those of Megatron-core's
Python ``IndexedDatasetBuilder`` (one sequence per document, no sequence modes). Reading uses
NumPy memory maps, like Megatron-core's ``IndexedDataset``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

import megacpt.data._indexed_builder as _ext
from megacpt.errors import UserError

_HEADER = b"MMIDIDX\x00\x00"
_DTYPES: dict[int, type[np.integer]] = {_ext.CODE_UINT16: np.uint16, _ext.CODE_INT32: np.int32}


def optimal_dtype(vocab_size: int) -> type[np.integer]:
    """The token dtype Megatron-core picks for a vocabulary (``DType.optimal_dtype``)."""
    return np.uint16 if vocab_size < 65500 else np.int32


def _code(dtype: type[np.integer]) -> int:
    for code, known in _DTYPES.items():
        if np.dtype(known) == np.dtype(dtype):
            return code
    raise UserError(f"token dtype {np.dtype(dtype)} is not supported (uint16 or int32)")


class IndexedWriter:
    """Stream documents into ``prefix.bin``/``prefix.idx``; a context manager.

    Leaving the ``with`` block normally finalises the dataset; leaving it by an exception
    removes every partial file, so a dataset at ``prefix`` is either complete or absent.
    ``finalize`` fsyncs both files before renaming them into place. Not thread-safe: the
    extension releases the GIL while it writes, so use each writer from one thread.

    With ``tokens_file``, the tokens go into that file from byte ``tokens_at`` on instead of
    ``prefix.bin`` (what was after ``tokens_at`` is dropped; a shorter file is an error): datasets
    written one after another into one file, so that ``merge(..., tokens_in_place=True)`` has no
    tokens to copy. That file is fsynced by ``finalize`` and never renamed.
    """

    def __init__(
        self,
        prefix: str | os.PathLike[str],
        dtype: type[np.integer],
        tokens_file: str | os.PathLike[str] | None = None,
        tokens_at: int = 0,
    ) -> None:
        self.prefix = os.fspath(prefix)
        self.dtype = np.dtype(dtype).type
        parent = os.path.dirname(self.prefix) or "."
        if not os.path.isdir(parent):
            raise UserError(f"output directory {parent} does not exist")
        file = "" if tokens_file is None else os.fspath(tokens_file)
        try:
            self._writer = _ext.IndexedWriter(self.prefix, _code(self.dtype), file, tokens_at)
        except RuntimeError as err:
            raise UserError(str(err)) from err

    def add_document(self, tokens: Sequence[int] | np.ndarray, eod: int | None = None) -> None:
        """Append one document (one sequence), followed by ``eod`` when given."""
        array = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens, dtype=np.int64)
        self.add_documents(array, np.array([array.size], dtype=np.int64), eod)

    def add_documents(self, tokens: np.ndarray, lengths: np.ndarray, eod: int | None = None) -> None:
        """Append a batch of documents: one flat integer token array and the length of each document.

        The fastest input: uint16, int32, uint32 and int64 arrays are read in place (other integer
        dtypes are copied first). A token that does not fit the dataset's dtype raises
        ``UserError``; the documents before its document are written, none after.
        """
        self._call(self._writer.add_documents, tokens, lengths, -1 if eod is None else eod)

    def add_lists(self, docs: list[list[int]], eod: int | None = None) -> None:
        """Append a batch of documents given as lists of token ids (what tokenizers return).

        Faster than converting the lists to NumPy first: the ids are read straight from the lists.
        """
        self._call(self._writer.add_lists, docs, -1 if eod is None else eod)

    def append(self, prefix: str | os.PathLike[str], tokens_in_place: bool = False) -> None:
        """Append every document of the finished dataset at ``prefix`` (streamed, not loaded); with
        ``tokens_in_place``, only its index: its tokens are already where they belong in this
        writer's ``tokens_file``."""
        self._call(self._writer.append_dataset, os.fspath(prefix), tokens_in_place)

    def finalize(self) -> None:
        """Write the ``.idx`` and rename both files into place."""
        self._writer.finalize()

    def abort(self) -> None:
        """Remove every partial file; nothing is left at ``prefix``."""
        self._writer.abort()

    @property
    def documents(self) -> int:
        return int(self._writer.documents)

    @property
    def tokens(self) -> int:
        return int(self._writer.tokens)

    def _call(self, method, *args) -> None:
        try:
            method(*args)
        except (ValueError, FileNotFoundError) as err:
            raise UserError(str(err)) from err

    def __enter__(self) -> IndexedWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


def merge(
    output_prefix: str | os.PathLike[str],
    input_prefixes: Iterable[str | os.PathLike[str]],
    tokens_in_place: bool = False,
) -> None:
    """Concatenate finished datasets into one, streaming (Megatron's ``add_index``, byte for byte).

    ``tokens_in_place``: the inputs were written one after another into ``output_prefix.bin``
    (``IndexedWriter(..., tokens_file=...)``), which must hold exactly their tokens; only their
    indices are merged."""
    prefixes = [os.fspath(p) for p in input_prefixes]
    if not prefixes:
        raise UserError("nothing to merge: no input datasets")
    dtype = read_index(prefixes[0]).dtype
    if not tokens_in_place:
        with IndexedWriter(output_prefix, dtype) as writer:
            for prefix in prefixes:
                writer.append(prefix)
        return
    tokens_file = os.fspath(output_prefix) + ".bin"
    expected = sum(int(read_index(p).sequence_lengths.sum(dtype=np.int64)) for p in prefixes)
    expected *= np.dtype(dtype).itemsize
    size = os.path.getsize(tokens_file) if os.path.isfile(tokens_file) else -1
    if size != expected:
        raise UserError(
            f"{tokens_file} holds {max(size, 0):,} bytes but the datasets written into it hold {expected:,}"
        )
    with IndexedWriter(output_prefix, dtype, tokens_file, size) as writer:
        for prefix in prefixes:
            writer.append(prefix, tokens_in_place=True)


@dataclass(frozen=True)
class Index:
    """The columns of an ``.idx`` file, memory-mapped."""

    dtype: type[np.integer]
    sequence_lengths: np.ndarray  # int32 [sequences]
    sequence_pointers: np.ndarray  # int64 [sequences], byte offsets into the .bin
    document_indices: np.ndarray  # int64 [documents + 1], starts at 0


def read_index(prefix: str | os.PathLike[str]) -> Index:
    """Read ``prefix.idx`` (checked against the format) without loading it into memory."""
    path = os.fspath(prefix) + ".idx"
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist")
    with open(path, "rb") as f:
        prelude = f.read(34)
    if len(prelude) < 34 or prelude[:9] != _HEADER or struct.unpack("<Q", prelude[9:17])[0] != 1:
        raise UserError(f"{path} is not a Megatron indexed dataset")
    code = prelude[17]
    sequences, documents = struct.unpack("<QQ", prelude[18:34])
    if code not in _DTYPES:
        raise UserError(f"{path} has token dtype code {code}; megacpt writes only uint16 and int32")
    if os.path.getsize(path) != 34 + sequences * 12 + documents * 8:
        raise UserError(f"{path} is truncated or has sequence modes")
    mm = np.memmap(path, mode="r")
    lengths = np.frombuffer(mm, np.int32, sequences, 34)
    pointers = np.frombuffer(mm, np.int64, sequences, 34 + lengths.nbytes)
    docs = np.frombuffer(mm, np.int64, documents, 34 + lengths.nbytes + pointers.nbytes)
    return Index(_DTYPES[code], lengths, pointers, docs)


def read_documents(prefix: str | os.PathLike[str]) -> Iterable[np.ndarray]:
    """Yield each document's tokens in order (one memory-mapped view per document)."""
    index = read_index(prefix)
    tokens = np.memmap(os.fspath(prefix) + ".bin", dtype=index.dtype, mode="r")
    itemsize = np.dtype(index.dtype).itemsize
    for start, end in zip(index.document_indices[:-1], index.document_indices[1:]):
        if end == start:
            yield tokens[:0]
            continue
        first = int(index.sequence_pointers[start]) // itemsize
        count = int(index.sequence_lengths[start:end].sum())
        yield tokens[first : first + count]


def validate(prefix: str | os.PathLike[str]) -> Index:
    """``read_index`` plus the checks that make a corrupt pair an error rather than garbage training:
    the ``.bin`` holds exactly the tokens the index counts, in order, and the document index is sane."""
    prefix = os.fspath(prefix)
    bin_path = prefix + ".bin"
    index = read_index(prefix)
    if not os.path.isfile(bin_path):
        raise UserError(f"{bin_path} does not exist (its .idx does)")
    itemsize = np.dtype(index.dtype).itemsize
    lengths = index.sequence_lengths.astype(np.int64)
    expected = int(lengths.sum()) * itemsize
    if expected == 0:
        raise UserError(f"{prefix}: the dataset holds no tokens")
    if os.path.getsize(bin_path) != expected:
        raise UserError(
            f"{bin_path} holds {os.path.getsize(bin_path):,} bytes but its .idx describes {expected:,} "
            f"({lengths.sum():,} {np.dtype(index.dtype).name} tokens): the pair is corrupt or mismatched"
        )
    starts = np.concatenate([[0], np.cumsum(lengths[:-1]) * itemsize])
    docs = index.document_indices
    if (
        not np.array_equal(index.sequence_pointers, starts)
        or len(docs) == 0
        or docs[0] != 0
        or docs[-1] != len(lengths)
    ):
        raise UserError(f"{prefix}.idx: its pointers or document index do not match its lengths (corrupt)")
    if np.any(np.diff(docs) < 0):
        raise UserError(f"{prefix}.idx: its document index goes backwards (corrupt)")
    return index


def max_token_id(prefix: str | os.PathLike[str], chunk: int = 1 << 22) -> int:
    """The largest token id in ``prefix.bin``, read in chunks into one buffer (a memory map of the
    whole file would count every page in the process's memory)."""
    dtype = read_index(prefix).dtype
    buffer = np.empty(chunk, dtype=dtype)
    largest = -1
    with open(os.fspath(prefix) + ".bin", "rb", buffering=0) as f:
        while count := f.readinto(memoryview(buffer.view(np.uint8))) // buffer.itemsize:  # type: ignore[arg-type]
            largest = max(largest, int(buffer[:count].max()))
    return largest
