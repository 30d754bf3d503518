"""Split text into words, optionally at morpheme boundaries, so trained tokens never cross them.

Swallow pre-segmented Japanese with MeCab before training its tokenizer; the same is offered here
for Japanese (MeCab through ``fugashi`` + ``unidic-lite``) and Korean (Kiwi through ``kiwipiepy``),
both optional (``pip install megacpt[morph]``). Segmentation only decides where a trained token
may end: every segment is an exact substring of the text, so no analyser rewrites the text
(Kiwi, for instance, reports lemmas; only its character offsets are used).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator

from megacpt.errors import UserError

WORD_RE = re.compile(r"\s*\S+")

Segmenter = Callable[[str], list[int]]


def _mecab() -> Segmenter:
    try:
        import fugashi
    except ImportError as err:
        raise UserError("morph 'mecab' needs fugashi and unidic-lite: pip install 'megacpt[morph]'") from err
    tagger = fugashi.Tagger()

    def starts(text: str) -> list[int]:
        offsets, pos = [], 0
        for word in tagger(text):
            found = text.find(word.surface, pos)
            if found >= 0:  # MeCab drops whitespace; its surfaces are otherwise exact substrings
                offsets.append(found)
                pos = found + len(word.surface)
        return offsets

    return starts


def _kiwi() -> Segmenter:
    try:
        import kiwipiepy
    except ImportError as err:
        raise UserError("morph 'kiwi' needs kiwipiepy: pip install 'megacpt[morph]'") from err
    kiwi = kiwipiepy.Kiwi()

    def starts(text: str) -> list[int]:
        return [token.start for token in kiwi.tokenize(text)]

    return starts


def make_segmenter(morph: str) -> Segmenter | None:
    """The morpheme-start finder for ``morph`` ("none", "mecab" or "kiwi"); ``None`` for "none"."""
    if morph == "none":
        return None
    return {"mecab": _mecab, "kiwi": _kiwi}[morph]()


def split_words(line: str, segmenter: Segmenter | None) -> Iterator[str]:
    """Yield the whitespace-delimited words of ``line`` (each with its leading whitespace),
    cut further at morpheme starts when a segmenter is given. Concatenated, they give ``line``."""
    cuts = set(segmenter(line)) if segmenter is not None else set()
    for match in WORD_RE.finditer(line):
        word, start = match.group(), match.start()
        body = start + len(word) - len(word.lstrip())
        inner = sorted(c for c in cuts if body < c < match.end())
        bounds = [start, *inner, match.end()]
        yield from (line[a:b] for a, b in itertools.pairwise(bounds))
