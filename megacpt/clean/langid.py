"""Offline language identification with ``py3langid``.

Chosen because its model (langid.py's naive Bayes over byte n-grams, 97 languages) ships inside
the wheel, needs nothing but numpy, and is deterministic; fastText-based detectors download their
model at run time, which compute nodes without internet cannot do. Within Chinese, Japanese and
Korean the model can be fooled by kanji-heavy text; there the script decides (kana only occur in
Japanese, Hangul only in Korean), and the probability reported is then 1. Long documents are identified
from their first ``max_chars`` characters, which is plenty for a byte n-gram model and bounds cost.
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
def known_languages() -> frozenset[str]:
    """The language codes the model identifies."""
    return frozenset(_identifier().nb_classes)


class LangId:
    """Identify a document's language and how sure the model is (a probability in [0, 1])."""

    def __init__(self, languages: list[str] | None = None, max_chars: int = 2000) -> None:
        self._model = _identifier(norm_probs=True)
        if languages:
            self._model.set_languages(languages)
        self.max_chars = max_chars

    def __call__(self, text: str) -> tuple[str, float]:
        head = text[: self.max_chars]
        lang, prob = self._model.classify(head)
        if lang in _CJK:
            vote = _script_vote(head)
            if vote is not None:
                return vote, 1.0
        return str(lang), float(prob)
