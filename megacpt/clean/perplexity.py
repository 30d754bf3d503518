"""Perplexity filtering with a reference model per language (CCNet's method, which RedWhale used to cut
its Korean corpus), and a word-order test for text that perplexity cannot tell from real text.

A reference model is a folder ``megacpt perplexity-model`` writes from text the user trusts:
- ``lm.arpa``: a character n-gram model (``megacpt.clean.ngram``);
- ``model.json``: its language, order, what it was trained on, and the distribution of its scores
  over held-out reference documents (percentiles 0-100), which percentile cuts (``p99``) refer to.

Each document of a language with a model gets three scores (``megacpt.clean.ngram``), each with a
cut that is a number or a percentile of the held-out reference documents:
- **bits per character** (CCNet's perplexity, as log2): off by default. A small reference's
  percentiles do not carry over to text of another domain: a model of JSTS captions puts 95% of
  Japanese Wikipedia paragraphs above its held-out p100;
- **context ratio**, those bits over the bits of the model's unigram level alone: random characters
  of the right script and mojibake score about 1 or more (the context explains nothing), real text
  well under it in any domain. Default cut 1.0;
- **word-order gain**, the bits per character its own word order saves over the same words shuffled:
  real text gains, shuffled-word text does not (a character model scores a shuffled document almost
  as well as the original, so perplexity alone misses it).

Measured on the bundled text with injected garbage in ``bench/results/clean_perplexity.md``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megacpt.atomic import atomic_directory, check_output
from megacpt.clean import ngram
from megacpt.clean.config import MAX_ORDER, REFERENCE_MODEL, PerplexityRule
from megacpt.clean.langid import LangId, known_languages
from megacpt.errors import UserError

ARPA, META = "lm.arpa", "model.json"
PERCENTILES = tuple(range(101))
MIN_LANGUAGE_SHARE = 0.8  # of reference documents identified as the model's language


SCORES = ("bits_per_character", "context_ratio", "word_order_gain")


def train_reference_model(
    texts: list[str], language: str, output: Path, *, order: int = 5, heldout_fraction: float = 0.1,
    seed: int = 0, sources: tuple[str, ...] = (), overwrite: bool = False,
) -> dict:  # fmt: skip
    """Train a character model of ``language`` on ``texts`` (less a held-out share that calibrates the
    percentiles) and write the reference folder at ``output``; its metadata."""
    if language not in known_languages():
        raise UserError(f"unknown language code {language!r}: use an ISO 639-1 code such as ko, ja, en")
    if not 2 <= order <= MAX_ORDER:
        raise UserError(f"the n-gram order must be between 2 and {MAX_ORDER} (KenLM's build), got {order}")
    if not 0 < heldout_fraction < 1:
        raise UserError(f"the held-out fraction must lie strictly between 0 and 1, got {heldout_fraction}")
    _check_language(texts, language)
    shuffled = list(texts)
    random.Random(seed).shuffle(shuffled)
    held = max(1, round(len(shuffled) * heldout_fraction))
    heldout, train = shuffled[:held], shuffled[held:]
    if len(heldout) < 20 or not train:
        raise UserError(
            f"{len(texts)} reference documents are too few: the held-out share needs at least 20 "
            f"documents to give percentiles (give more text or a larger --heldout-fraction)"
        )
    check_output(output, [], overwrite, REFERENCE_MODEL)
    with atomic_directory(output, REFERENCE_MODEL, replace=overwrite) as tmp:
        ngram.write_arpa(train, order, tmp / ARPA)
        model = ngram.CharModel(tmp / ARPA)
        scored = [model.scores(text) for text in heldout]
        meta = {
            "language": language,
            "order": order,
            "sources": list(sources),
            "train_documents": len(train),
            "train_characters": sum(map(len, train)),
            "heldout_documents": len(heldout),
            "heldout_percentiles": {
                name: _percentiles([getattr(x, name) for x in scored]) for name in SCORES
            },
        }
        (tmp / META).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return meta


def _check_language(texts: list[str], language: str) -> None:
    """Refuse reference text that is mostly another language (a model of the wrong language would
    remove every real document)."""
    identify = LangId()
    sample = texts[:: max(1, len(texts) // 500)]
    found = [identify(text)[0] for text in sample]
    share = found.count(language) / len(found) if found else 0.0
    if share < MIN_LANGUAGE_SHARE:
        common = max(set(found), key=found.count) if found else "nothing"
        raise UserError(
            f"the reference text is not {language}: {share:.0%} of its documents are identified as "
            f"{language}, most as {common}"
        )


def _percentiles(values: list[float | None]) -> list[float]:
    """Percentiles 0-100 of the values given (documents too short for a score give none); none when
    no document has the score."""
    known = [v for v in values if v is not None]
    return [round(float(v), 4) for v in np.percentile(known, PERCENTILES)] if known else []


@dataclass(frozen=True)
class Cut:
    """A threshold: a number, or a percentile of the held-out reference scores (``p99``)."""

    text: str

    def __post_init__(self) -> None:
        try:
            value = float(self.text[1:] if self.is_percentile else self.text)
        except ValueError:
            raise UserError(f"a cut is a number or a percentile such as p99, got {self.text!r}") from None
        if self.is_percentile and not 0 <= value <= 100:
            raise UserError(f"a percentile cut lies between p0 and p100, got {self.text!r}")
        if not np.isfinite(value):
            raise UserError(f"a cut must be finite, got {self.text!r}")

    @property
    def is_percentile(self) -> bool:
        return self.text.startswith("p")

    def resolve(self, percentiles: list[float], score: str) -> float:
        """The cut as a number (a percentile of the held-out ``percentiles`` of ``score``)."""
        if not self.is_percentile:
            return float(self.text)
        if not percentiles:
            raise UserError(
                f"the reference model has no held-out {score} (its documents are too short for it): "
                f"give the cut {self.text} as a number"
            )
        return float(np.interp(float(self.text[1:]), PERCENTILES, percentiles))


def load_rule(
    language: str, model_dir: Path, cuts: tuple[Cut | None, Cut | None, Cut | None]
) -> PerplexityRule:
    """The rule for ``language`` from its reference folder (which must hold a model of that very
    language); ``cuts`` for bits per character, context ratio and word-order gain, in that order."""
    meta_path = Path(model_dir) / META
    if not (Path(model_dir) / ARPA).is_file() or not meta_path.is_file():
        raise UserError(
            f"{model_dir} is not a perplexity reference model (megacpt perplexity-model writes one)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model_language, percentiles = meta["language"], meta["heldout_percentiles"]
        scored = [[float(v) for v in percentiles[name]] for name in SCORES]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{meta_path} is not a reference model's metadata ({err})") from None
    resolved = [
        None if cut is None else cut.resolve(values, name.replace("_", " "))
        for cut, values, name in zip(cuts, scored, SCORES, strict=True)
    ]
    if model_language != language:
        raise UserError(f"the reference model {model_dir} is a {model_language} model, not {language}")
    try:  # here, not in a worker process, where a failure would only restart the worker
        ngram.CharModel(Path(model_dir) / ARPA)
    except (OSError, RuntimeError, ValueError, IndexError) as err:
        raise UserError(f"cannot load the reference model {model_dir}: {err}") from None
    texts = ("none" if cuts[0] is None else cuts[0].text, "none" if cuts[1] is None else cuts[1].text,
             "none" if cuts[2] is None else cuts[2].text)  # fmt: skip
    bits, ratio, gain = resolved
    return PerplexityRule(language, Path(model_dir), bits, ratio, gain, texts)


class PerplexityScorer:
    """Scores documents with each language's reference model (loaded once per worker)."""

    def __init__(self, rules: tuple[PerplexityRule, ...]) -> None:
        self.rules = {rule.language: rule for rule in rules}
        self.models = {rule.language: ngram.CharModel(rule.model_dir / ARPA) for rule in rules}

    def failure(self, text: str, language: str | None) -> tuple[str, str] | None:
        """(filter, why) when ``text`` fails its language's rule; None when it passes or has no rule."""
        rule = self.rules.get(language or "")
        if rule is None:
            return None
        scores = self.models[rule.language].scores(text)
        bits_cut, ratio_cut, gain_cut = rule.cuts
        if (
            rule.max_bits_per_character is not None
            and scores.bits_per_character > rule.max_bits_per_character
        ):
            return "perplexity", (
                f"{scores.bits_per_character:.2f} bits/char > {rule.max_bits_per_character:.2f} ({rule.language} {bits_cut})"
            )
        if rule.max_context_ratio is not None and scores.context_ratio > rule.max_context_ratio:
            return "perplexity", (
                f"context ratio {scores.context_ratio:.3f} > {rule.max_context_ratio:.3f}: the model predicts it no "
                f"better than its characters alone ({rule.language} {ratio_cut})"
            )
        gain = scores.word_order_gain
        if rule.min_word_order_gain is not None and gain is not None and gain < rule.min_word_order_gain:
            return "word_order", (
                f"its word order saves {gain:.3f} bits/char < {rule.min_word_order_gain:.3f} ({rule.language} {gain_cut})"
            )
        return None
