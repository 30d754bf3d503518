"""Offline language identification with ``py3langid``.

Chosen because its model (langid.py's naive Bayes over byte n-grams, 97 languages) ships inside
the wheel, needs nothing but numpy, and is deterministic; fastText-based detectors download their
model at run time, which compute nodes without internet cannot do. Within Chinese, Japanese and
Korean the model can be fooled by kanji-heavy text; there the script decides (kana only occur in
Japanese, Hangul only in Korean), and the probability reported is then 1. Long documents are identified
from their first ``max_chars`` characters, which is plenty for a byte n-gram model and bounds cost.

py3langid walks its byte automaton in a Python loop, the largest single cost of cleaning. Where the
C++ walker (``csrc/langid_walk.cpp``, built at install) is present, it takes the place of
``py3langid.langid.visit_counts`` for this model's automaton: the same feature counts in the same
order, so the same scores (tests/clean/test_clean_text.py compares them).
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


def _identifier(**kwargs: Any) -> Any:
    """A fresh ``py3langid`` identifier (imported here: it loads numpy, which ``--help`` never needs)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, **kwargs)


@functools.cache
def _scorer() -> Any:
    """The identifier every ``LangId`` of this process shares (probabilities normalised), its
    automaton walked in C++ where the extension is built."""
    identifier = _identifier(norm_probs=True)
    _walk_in_cpp(identifier)
    return identifier


def _walk_in_cpp(identifier: Any) -> None:
    """Count ``identifier``'s features with the C++ walker from now on (other automata, such as
    py3langid's training, keep its own loop)."""
    try:
        from megacpt.clean._langid_walk import Walker
    except ImportError:  # a source tree whose extension was not built: py3langid's loop
        return
    import numpy as np
    from py3langid import langid

    try:
        nextmove = identifier.tk_nextmove
        walker = Walker(nextmove, np.asarray(identifier.tk_row, np.int64) << 8, identifier.tk_output)
    except AttributeError:  # a py3langid whose model is laid out otherwise: its own loop
        return
    python_walk = langid.visit_counts

    def visit_counts(nm: Any, rowbase: Any, out: Any, text: bytes) -> Any:
        if nm is nextmove:
            return walker.visit(bytes(text))
        return python_walk(nm, rowbase, out, text)

    visit_counts.python_walk = python_walk  # type: ignore[attr-defined]
    langid.visit_counts = visit_counts


@functools.cache
def known_languages() -> frozenset[str]:
    """The language codes the model identifies."""
    return frozenset(_identifier().nb_classes)


class LangId:
    """Identify a document's language and how sure the model is (a probability in [0, 1])."""

    def __init__(self, languages: list[str] | None = None, max_chars: int = 2000) -> None:
        if languages:  # a model of its own, narrowed to these languages
            self._model = _identifier(norm_probs=True)
            self._model.set_languages(languages)
        else:
            self._model = _scorer()
        self.max_chars = max_chars

    def __call__(self, text: str) -> tuple[str, float]:
        head = text[: self.max_chars]
        lang, prob = self._model.classify(head)
        if lang in _CJK:
            vote = _script_vote(head)
            if vote is not None:
                return vote, 1.0
        return str(lang), float(prob)
