"""Read cleaned JSONL text (plain or compressed) and split it deterministically into train and held-out documents.

The split hashes each document's text, so it is the same on every machine and every run, does
not depend on file order, and a document duplicated across files always lands on the same side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from megacpt.errors import UserError
from megacpt.inputs import open_binary


def iter_texts(paths: Sequence[Path], key: str = "text") -> Iterator[str]:
    """Yield the non-empty ``key`` field of every JSONL line (plain, ``.gz`` or ``.zst``), with a
    clear error on bad lines and on truncated or corrupt files."""
    for path in paths:
        with open_binary(path) as handle:
            for lineno, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise UserError(
                        f"{path}:{lineno}: not UTF-8 text (byte {err.start} of the line)"
                    ) from None
                try:
                    text = json.loads(line)[key]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise UserError(f"{path}:{lineno}: not a JSON object with a {key!r} field") from err
                if not isinstance(text, str):
                    raise UserError(f"{path}:{lineno}: {key!r} is not a string")
                if text.strip():
                    yield text


def is_heldout(text: str, fraction: float) -> bool:
    """Whether a document belongs to the held-out share ``fraction``, decided by its hash."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


@dataclass
class Split:
    """Documents of one corpus, split into training and held-out text."""

    train: list[str]
    heldout: list[str]


def load_split(paths: Sequence[Path], heldout_fraction: float, key: str = "text") -> Split:
    """Read ``paths`` and split them; an empty corpus or an empty training side is a ``UserError``."""
    split = Split(train=[], heldout=[])
    for text in iter_texts(paths, key):
        (split.heldout if is_heldout(text, heldout_fraction) else split.train).append(text)
    names = ", ".join(str(p) for p in paths)
    if not split.train and not split.heldout:
        raise UserError(f"empty corpus: no document with non-empty 'text' in {names}")
    if not split.train:
        raise UserError(f"no training text left after holding out {heldout_fraction:.0%} of {names}")
    return split
