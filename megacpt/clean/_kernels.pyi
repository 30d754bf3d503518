"""Type stub for the per-document C++ kernels of cleaning (csrc/clean_kernels.cpp)."""

import numpy as np

class LangScorer:
    def __init__(
        self,
        nextmove: object,
        rowbase: object,
        output: object,
        table: np.ndarray,
        halves: np.ndarray,
        prior: np.ndarray,
    ) -> None: ...
    def scores(self, text: bytes) -> np.ndarray | None:
        """py3langid's raw scores (prior + log1p(count) * table summed over features), None without a feature."""

def class_counts(text: str, table: np.ndarray) -> tuple[tuple[int, ...], int]:
    """Characters with each of the table's 8 bits set (BMP), and the number beyond the BMP."""

def repeated_ngram_cover(text: str, n: int) -> int:
    """Characters under an n-character window that occurs more than once."""

def minhash(text: str, n: int, multipliers: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per permutation, the least (a * x + b) >> 32 over the low 32 bits x of the n-grams' hashes."""
