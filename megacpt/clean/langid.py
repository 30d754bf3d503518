"""Offline language identification with ``py3langid``.

Chosen because its model (langid.py's naive Bayes over byte n-grams, 97 languages) ships inside
the wheel, needs nothing but numpy, and is deterministic; fastText-based detectors download their
model at run time, which compute nodes without internet cannot do. Within Chinese, Japanese and
Korean the model can be fooled by kanji-heavy text; there the script decides (kana only occur in
Japanese, Hangul only in Korean), and the probability reported is then 1. Long documents are identified
from their first ``max_chars`` characters, which is plenty for a byte n-gram model and bounds cost.

py3langid walks its byte automaton in a Python loop and sums its scores in numpy, the largest
single cost of cleaning; the identifier cleaning shares scores in C++ instead (``LangScorer`` in
``csrc/clean_kernels.cpp``): the same features and sums, so the same labels and probabilities to
float32 rounding (tests/clean/test_kernels.py compares them with py3langid's own).
"""

from __future__ import annotations

import functools
from typing import Any

from megacpt.clean.filters import HANGUL, KANA, LETTER, count

# Labels the byte model confuses among themselves on kanji-heavy or short CJK text.
_CJK = frozenset({"ja", "ko", "zh", "wuu", "yue"})


def _script_vote(text: str) -> str | None:
    """Kana appear only in Japanese and Hangul only in Korean: a decisive share settles it."""
    letters = count(LETTER, text)
    if not letters:
        return None
    if count(KANA, text) >= 0.05 * letters:
        return "ja"
    if count(HANGUL, text) >= 0.3 * letters:
        return "ko"
    return None


@functools.cache
def _scorer() -> Any:
    """The identifier every ``LangId`` of this process shares (probabilities normalised), scoring in C++
    (py3langid imported here: it loads numpy, which ``--help`` never needs)."""
    import numpy as np
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    import megacpt.clean._kernels as _kernels

    class CppScored(LanguageIdentifier):
        """py3langid's identifier, its walk and sum of one text's scores in C++ (all languages)."""

        def _raw_score(self, text: bytes) -> Any:
            scores = self.cpp.scores(text)
            return np.zeros(len(self.nb_classes), np.float32) if scores is None else scores  # no feature

        def __reduce__(self) -> tuple[Any, ...]:  # a step sent to a worker process: that process's own
            return _scorer, ()

    identifier = CppScored.from_model_file(MODEL_FILE, norm_probs=True)
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    identifier.cpp = _kernels.LangScorer(
        identifier.tk_nextmove,
        identifier._rowbase,
        identifier.tk_output,
        identifier.nb_ptc.view(np.uint16),
        halves,
        identifier.nb_pc,
    )
    return identifier


@functools.cache
def known_languages() -> frozenset[str]:
    """The language codes the model identifies (from the shared identifier: a run checks its languages
    before it starts its workers, which then have the model loaded already)."""
    return frozenset(_scorer().nb_classes)


class LangId:
    """Identify a document's language and how sure the model is (a probability in [0, 1])."""

    def __init__(self, max_chars: int = 2000) -> None:
        self._model = _scorer()  # all languages: a document in another one is found out as such
        self.max_chars = max_chars

    def __call__(self, text: str) -> tuple[str, float]:
        head = text[: self.max_chars]
        lang, prob = self._model.classify(head)
        if lang in _CJK:
            vote = _script_vote(head)
            if vote is not None:
                return vote, 1.0
        return str(lang), float(prob)
