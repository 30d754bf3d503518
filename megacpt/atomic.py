"""Atomic writes: a reader (or a rerun after a crash) sees the old file or the whole new one.

Every file megacpt publishes goes through here: written under a temporary sibling name (same
directory, so the rename never crosses a filesystem), flushed and fsynced, then renamed over the
target; a failure removes the temporary file. The standard library has the pieces
(``os.replace`` is atomic on POSIX), not the pattern, and the candidates on PyPI (``atomicwrites``,
unmaintained) add nothing but a dependency.

Every output is also checked before any work (``check_output``): it may not be or contain an
input, and ``--overwrite`` replaces a directory only if megacpt published it as the same kind of
output (its ``OUTPUT_MARKER`` file), never a user's own folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from megacpt.errors import UserError


def _temporary(path: Path) -> Path:
    # keeps the suffix, which some writers (matplotlib, numpy) use to choose the format
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s new contents to, by any means (``savefig``, ``np.save``);
    renamed over ``path`` when the block succeeds, removed when it fails."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(final)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_directory(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, published atomically when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
        yield handle


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON (UTF-8, not escaped) to ``path`` atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


OUTPUT_MARKER = ".megacpt-output"  # in every directory atomic_directory publishes: what kind it is
# The kinds of directory megacpt publishes; --overwrite replaces an output only by one of its kind.
HF_MODEL = "Hugging Face model"
CHECKPOINT = "megacpt checkpoint"
TOKENIZER = "tokenizer"
LM_EVAL_TASKS = "lm-evaluation-harness task folder"


def output_kind(directory: Path) -> str | None:
    """What megacpt wrote ``directory`` as (its marker), or None when megacpt did not publish it."""
    try:
        return (directory / OUTPUT_MARKER).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def is_empty_directory(path: Path) -> bool:
    """Whether ``path`` is missing or an empty directory: nothing there to lose."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def check_replaceable(target: str | os.PathLike, kind: str) -> None:
    """Raise ``UserError`` unless an existing ``target`` may be replaced by a new ``kind`` output: it
    must be an empty directory or one that megacpt published as the same kind, never a user's folder."""
    path = Path(target)
    if is_empty_directory(path):
        return
    if not path.is_dir():
        raise UserError(f"{path} exists and is not a directory; choose another output path")
    found = output_kind(path)
    if found is None:
        raise UserError(
            f"{path} is not an output of megacpt (it has no {OUTPUT_MARKER}): refusing to replace it; "
            "choose another output path or remove it yourself"
        )
    if found != kind:
        raise UserError(f"{path} holds a {found}, not a {kind}: refusing to replace it; choose another path")


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(
    output: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None],
    overwrite: bool,
    kind: str | None = None,
) -> None:
    """Before any work, refuse an ``output`` that would lose something the user wrote: one that is or
    contains one of the ``inputs``; an existing one without ``overwrite``; and, for a directory output
    (``kind`` given), one that megacpt did not publish as that kind; and one whose folder cannot be
    written."""
    out = os.path.realpath(output)
    for source in inputs:
        if source is not None and _is_within(os.path.realpath(source), out):
            raise UserError(f"the output {output} is or contains the input {source}: write to a new path")
    check_writable(Path(out).parent)  # before the work, not after it
    if not os.path.lexists(output) or (kind is not None and is_empty_directory(Path(output))):
        return
    if not overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it")
    if kind is not None:
        check_replaceable(output, kind)
    elif os.path.isdir(output):
        raise UserError(f"{output} is a directory, not a file; choose another output path")


@contextmanager
def atomic_directory(target: str | os.PathLike, kind: str, replace: bool = False) -> Iterator[Path]:
    """A temporary sibling directory renamed to ``target`` only when the block succeeds, marked as
    megacpt's ``kind`` output (``OUTPUT_MARKER``).

    An existing ``target`` (other than an empty directory) is an error unless ``replace``, and even
    then unless it is an earlier ``kind`` output (``check_replaceable``); it is swapped out, and removed only after the new
    directory is in place.
    """
    final = Path(target)
    if not is_empty_directory(final):
        if not replace:
            raise UserError(f"{final} already exists; pass --overwrite to replace it")
        check_replaceable(final, kind)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text(kind + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}") if final.exists() else None
    if old is not None:
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_directory(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_writable(directory: Path) -> None:
    """Raise ``UserError`` unless files can be created in ``directory``, or ``directory`` can be made;
    creates nothing that stays (a probe file in the nearest existing folder, removed at once)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write to {directory}: {existing} is not a directory")
    probe = existing / f".megacpt-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to {directory}: {err.strerror} ({existing})") from None
