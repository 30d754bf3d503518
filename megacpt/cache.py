"""megacpt's per-user cache directory: fetched models, converted tokenizers. Everything there can be rebuilt."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MEGACPT_CACHE``, or ``~/.cache/megacpt``."""
    return Path(os.environ.get("MEGACPT_CACHE") or Path.home() / ".cache" / "megacpt")
