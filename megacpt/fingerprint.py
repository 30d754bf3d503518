"""What the processes of one job compare before they work together, so that a node with other code,
another config, or stale data or tokenizer files stops the job in one line instead of training or
tokenising on a mixture of them.

Each process describes what it will use as a flat mapping of short strings (``describe_files``,
``code_version``, ``flatten``); the launcher-specific layer (torch.distributed for training, MPI
for preprocessing) gathers the descriptions, and ``disagreement`` names the first part where a
process differs from rank 0.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

EDGE_BYTES = 1 << 20  # a large file is known by its size and its first and last MiB
SHOWN_CHARS = 60  # of a differing value, in the error line
PACKAGES = ("torch", "megatron-core")  # whose versions are part of the code version


def host() -> str:
    """The node's name as Slurm knows it, else the host name."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def file_digest(path: str | os.PathLike) -> str:
    """``size N sha256 …`` of a file's size and its first and last MiB (all of it when smaller): cheap
    on a terabyte ``.bin``, and a copy that is stale, truncated or rewritten differs."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest = hashlib.sha256(f.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            digest.update(f.read())
    return f"size {size:,} sha256 {digest.hexdigest()[:16]}"


def describe_files(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """``{path: file_digest}``, or ``unreadable (why)`` for a path this process cannot read."""
    described = {}
    for path in paths:
        try:
            described[str(path)] = file_digest(path)
        except OSError as err:
            described[str(path)] = f"unreadable ({err.strerror or type(err).__name__})"
    return described


def code_version() -> dict[str, str]:
    """A digest of megacpt's own source files, and the versions of the libraries it drives."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode() + b"\0" + source.read_bytes() + b"\0")
    version = {"megacpt source": f"sha256 {digest.hexdigest()[:16]}"}
    for name in PACKAGES:
        try:
            version[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version[name] = "not installed"
    return version


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{dotted.key: repr(value)}``."""
    if isinstance(tree, Mapping):
        flat: dict[str, str] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: repr(tree)}


def _shown(value: str | None) -> str:
    if value is None:
        return "nothing"
    return value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 1] + "…"


def disagreement(described: Sequence[tuple[str, Mapping[str, str]]]) -> str | None:
    """For every rank's ``(host, description)`` in rank order: where the first rank that differs from
    rank 0 differs, as one sentence, or None when all agree."""
    host0, first = described[0]
    for rank, (where, description) in enumerate(described[1:], start=1):
        for key in sorted(set(first) | set(description)):
            if first.get(key) != description.get(key):
                return (
                    f"rank {rank} on {where} disagrees with rank 0 on {host0} about {key}: "
                    f"it has {_shown(description.get(key))}, rank 0 has {_shown(first.get(key))}"
                )
    return None
