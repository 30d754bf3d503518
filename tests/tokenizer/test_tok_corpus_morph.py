"""The deterministic held-out split and morphological pre-segmentation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from megacpt.tokenizer.corpus import is_heldout, load_split
from megacpt.tokenizer.morph import make_segmenter, split_words
from tests.tokenizer.tok_helpers import JA, KO, texts, write_jsonl


def test_split_is_deterministic_and_order_free(tmp_path: Path) -> None:
    docs = texts(KO)[:300]
    a = load_split([write_jsonl(tmp_path / "a.jsonl", docs)], 0.2)
    b = load_split([write_jsonl(tmp_path / "b.jsonl", docs[::-1])], 0.2)
    assert sorted(a.heldout) == sorted(b.heldout) and not set(a.heldout) & set(a.train)
    assert 30 < len(a.heldout) < 90
    assert all(is_heldout(d, 0.2) for d in a.heldout)


def test_words_rebuild_the_line() -> None:
    line = "  대한민국의 수도는\t서울 입니다. "
    assert "".join(split_words(line, None)) == line.rstrip()


@pytest.mark.parametrize(
    ("morph", "module", "path"),
    [("mecab", "fugashi", JA[0]), ("kiwi", "kiwipiepy", KO)],
)
def test_morph_segments_are_substrings_at_boundaries(morph: str, module: str, path: Path) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed (pip install 'megacpt[morph]')")
    segmenter = make_segmenter(morph)
    for doc in texts(path)[:20]:
        line = doc.split("\n")[0]
        words = list(split_words(line, segmenter))
        assert "".join(words) == line.rstrip()
        assert len(words) > len(list(split_words(line, None)))
