"""Opening a user's input file, plain, ``.gz`` or ``.zst``, for every tool that reads text, and
reading a user's JSON file (``read_json``).

A compressed file that is cut short or corrupt is an error naming the file, never a silently
shorter corpus: Python's ``gzip`` raises ``EOFError``/``zlib.error`` deep inside a read, and
``zstandard``'s stream reader simply stops at a truncated frame. So the zstd stream here is
decoded frame by frame with ``zstandard``'s ``decompressobj`` (the reference binding, which reports
whether each frame reached its end), and both decoders' errors become one ``UserError``.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from megacpt.errors import UserError

COMPRESSIONS = (".gz", ".zst")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
CHUNK = 1 << 20


def input_files(patterns: Sequence[str | os.PathLike], wanted: Callable[[str], bool], what: str) -> list[str]:
    """The files that ``patterns`` name, in the order given: an existing file as is (even with ``[``
    or ``*`` in its name); a glob's matches, sorted; a directory's files at any depth, sorted, that
    ``wanted`` accepts, hidden files and folders left out (``what`` names them, for the error when
    there are none). A file named twice is an error: it would be read twice."""
    paths: list[str] = []
    for pattern in (str(os.fspath(p)) for p in patterns):
        if os.path.isfile(pattern):
            matches = [pattern]
        elif os.path.isdir(pattern):
            matches = [path for path in _files_under(pattern) if wanted(path)]
            if not matches:
                raise UserError(f"directory {pattern} holds no {what}")
        else:
            matches = [m for m in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(m)]
            if not matches:
                raise UserError(f"no input file matches {pattern}")
        paths.extend(matches)
    seen: dict[str, str] = {}
    for path in paths:
        first = seen.setdefault(os.path.realpath(path), path)
        if first is not path:
            raise UserError(f"input {path} is named twice (also as {first}): it would be read twice")
    return paths


def _files_under(directory: str) -> list[str]:
    """The files under ``directory``, sorted, hidden files and folders (``.git``) left out."""
    found = []
    for root, folders, names in os.walk(directory):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        found += [os.path.join(root, name) for name in names if not name.startswith(".")]
    return sorted(found)


def is_jsonl(path: str) -> bool:
    """A JSONL file's name (``.jsonl``, ``.ndjson``), plain or ``.gz``/``.zst``: what a directory
    contributes (its ``.json`` files are more often configs and reports than data)."""
    name = os.path.basename(path).lower()
    return name.removesuffix(compression_of(name)).endswith((".jsonl", ".ndjson"))


def compression_of(path: str | os.PathLike) -> str:
    """The compression suffix of ``path`` (``.gz``, ``.zst``), or ``""``."""
    ext = os.path.splitext(os.fspath(path).lower())[1]
    return ext if ext in COMPRESSIONS else ""


def _truncated(path: str) -> UserError:
    return UserError(f"{path} is truncated: its compressed stream ends early")


class _ZstdStream(io.RawIOBase):
    """The decompressed bytes of a ``.zst`` file (any number of frames); raises on a cut-short frame."""

    def __init__(self, path: str) -> None:
        import zstandard

        self._path, self._error = path, zstandard.ZstdError
        self._file = open(path, "rb")  # noqa: SIM115 -- closed by close()
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._in_frame = False
        self._out, self._pos = b"", 0

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> None:
        parts = []
        while data:
            try:
                parts.append(self._frame.decompress(data))
            except self._error as err:
                raise UserError(f"{self._path} is corrupt: not a valid zstd stream ({err})") from None
            self._in_frame = not self._frame.eof
            data = b""
            if self._frame.eof:  # the next frame, if any, starts in what is left
                data = self._frame.unused_data
                self._frame = self._context.decompressobj()
        self._out, self._pos = b"".join(parts), 0

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._pos == len(self._out):
            chunk = self._file.read(CHUNK)
            if not chunk:
                if self._in_frame:
                    raise _truncated(self._path)
                return 0
            self._feed(chunk)
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


class _GzipStream(io.RawIOBase):
    """``gzip``'s decompressed bytes, its truncation and corruption errors naming the file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._gzip = gzip.open(path, "rb")  # noqa: SIM115 -- closed by close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            return self._gzip.readinto(buffer)
        except EOFError:
            raise _truncated(self._path) from None
        except (OSError, zlib.error) as err:
            raise UserError(f"{self._path} is corrupt: not a valid gzip stream ({err})") from None

    def close(self) -> None:
        self._gzip.close()
        super().close()


def open_binary(path: str | os.PathLike) -> io.BufferedReader:
    """``path``'s bytes, decompressed by its suffix; a directory or a missing file is a ``UserError``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a file")
    try:
        compression = compression_of(path)
        if compression == ".zst":
            return io.BufferedReader(_ZstdStream(path), CHUNK)
        if compression == ".gz":
            return io.BufferedReader(_GzipStream(path), CHUNK)
        return io.BufferedReader(io.FileIO(path, "rb"), CHUNK)
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None


class JsonObject(dict):
    """A JSON object read by ``read_json``: a missing key is a ``UserError`` naming the file and key,
    so a ``config.json`` without a required field is one error line, not a ``KeyError``."""

    source = ""

    def __missing__(self, key: str) -> Any:
        raise UserError(f"{self.source} has no {key!r} field")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON file at ``path`` (objects as ``JsonObject``); a missing, unreadable or malformed file
    is a ``UserError`` naming it."""
    path = os.fspath(path)

    def as_object(pairs: list[tuple[str, Any]]) -> JsonObject:
        found = JsonObject(pairs)
        found.source = path
        return found

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle, object_pairs_hook=as_object)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text, so not JSON") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err.msg} (line {err.lineno})") from None
