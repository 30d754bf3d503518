"""Type stub for the C++ JSONL block scanner (csrc/jsonl_scan.cpp); use megacpt.data.columns."""

import numpy as np

def scan(
    block: bytes | bytearray, keys: list[str], max_bytes: int
) -> tuple[list[tuple[np.ndarray, np.ndarray, int]], dict[str, int], np.ndarray]:
    """(offsets, data, characters) per key; skip counts by reason; undecided lines as (start, end, position) rows."""
