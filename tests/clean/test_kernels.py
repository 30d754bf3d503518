"""The C++ kernels of cleaning (csrc/clean_kernels.cpp) against the Python they replaced: py3langid's
own scores, and the numpy MinHash of character shingles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from megacpt.clean.langid import LangId
from megacpt.clean.minhash import Fingerprints, minhash_config

CORPORA = Path(__file__).resolve().parents[2] / "examples" / "corpora"
ODD = ["", "a", "😀 \ud800", "ALL CAPS ENGLISH TEXT", "가", "ｶﾞ３５\u3000٣", "x" * 5000]


def _texts(per_file: int = 60) -> list[str]:
    texts = []
    for path in sorted(CORPORA.glob("*/*.jsonl")):
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for _, line in zip(range(per_file), f, strict=False)]
    return texts


def test_language_scores_are_py3langids() -> None:
    """Same label, and the same probabilities to float32 rounding, as py3langid's own walk and sum."""
    ours, theirs = LangId()._model, LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    assert hasattr(ours, "cpp") and not hasattr(theirs, "cpp")
    for text in _texts() + ODD:
        head = text[:2000]
        fast, slow = ours._decide(head), theirs._decide(head)
        assert fast.dtype == slow.dtype == np.float32
        np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-6, err_msg=head[:40])
        assert ours.classify(head)[0] == theirs.classify(head)[0]


def _numpy_signature(text: str, n: int, multipliers: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The reference: shingle hashes in numpy, then the least multiply-shift value per permutation."""
    points = np.frombuffer(" ".join(text.split()).encode("utf-32-le", "surrogatepass"), np.uint32).astype(
        np.uint64
    )
    n = max(min(n, len(points)), 1)
    count = max(len(points) - n + 1, 1)
    hashes = np.zeros(count, np.uint64)
    for k in range(min(n, len(points))):
        hashes = hashes * np.uint64(0x100000001B3) + points[k : k + count]
    for mix in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, None):
        hashes ^= hashes >> np.uint64(33)
        if mix is not None:
            hashes *= np.uint64(mix)
    keys = np.unique(hashes)[:, None] & np.uint64(0xFFFFFFFF)
    return ((keys * multipliers + offsets) >> np.uint64(32)).min(axis=0).astype(np.uint32)


@pytest.mark.parametrize("shingle_chars", [1, 5, 9])
def test_minhash_signatures_are_the_numpy_references(tmp_path: Path, shingle_chars: int) -> None:
    step = Fingerprints(tmp_path, minhash_config(0.8, 117, shingle_chars), near=True)
    for text in _texts(20) + ODD:
        flat = " ".join(text.split())
        expected = _numpy_signature(flat, shingle_chars, step._multipliers, step._offsets)
        np.testing.assert_array_equal(step.signature(flat), expected, err_msg=flat[:40])
