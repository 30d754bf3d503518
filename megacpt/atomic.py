"""Atomic writes: a reader (or a rerun after a crash) sees the old file or the whole new one.

Every file megacpt publishes goes through here: written under a temporary sibling name (same
directory, so the rename never crosses a filesystem), flushed and fsynced, then renamed over the
target; a failure removes the temporary file. The standard library has the pieces
(``os.replace`` is atomic on POSIX), not the pattern, and the candidates on PyPI (``atomicwrites``,
unmaintained) add nothing but a dependency.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
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


@contextmanager
def atomic_directory(target: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """A temporary sibling directory renamed to ``target`` only when the block succeeds.

    An existing ``target`` is an error unless ``replace``; then it is swapped out, and removed only
    after the new directory is in place.
    """
    from megacpt.errors import UserError

    final = Path(target)
    if final.exists() and not replace:
        raise UserError(f"{final} already exists; pass --overwrite to replace it")
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
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
