"""Character n-gram language models for perplexity filtering (CCNet's method, which RedWhale used):
trained here, offline, on reference text the user gives, written as ARPA, scored with KenLM.

- **Training** is interpolated Kneser-Ney (one discount per order, estimated from the counts of
  counts) in plain Python, written as a backoff ARPA file. KenLM's trainer (``lmplz``) is not on
  PyPI; its Python module only scores. A model of 1-3 MB of text trains in seconds.
- **Scoring** uses KenLM's Python module (``ufal-kenlm``: prebuilt wheels of kenlm) when installed;
  ``ArpaModel`` scores the same file in Python otherwise (about 20x slower), and is the reference
  the KenLM path is tested against.
- **Tokens** are characters: CCNet's word models need a word segmenter per language, and Korean and
  Japanese words are ill-defined by spaces. A run of whitespace is one token, ``▁``; each line is a
  sentence (``<s>`` ... ``</s>``).

A document's scores (``CharModel.scores``): bits per character (minus the log2-probability of its
lines over the tokens predicted: characters, whitespace runs and one ``</s>`` per line); the context
ratio, those bits over the bits of the model's unigram level alone (text made of the right
characters in no order the model knows scores about 1, real text well under); and the word-order
gain, how many bits per character its own word order saves over the same words shuffled.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import regex

BOS, EOS, UNK, SPACE = "<s>", "</s>", "<unk>", "▁"
LOG2_10 = math.log2(10)
_WHITESPACE = re.compile(r"\s+")
# The words of a line written without spaces, for the word-order test: runs of one script
# (東京都|に|住|んでいる), whitespace kept in place between them.
_SCRIPTS = r"\p{Han}+|\p{Hiragana}+|\p{Katakana}+|\p{Hangul}+|\p{Latin}+|\p{N}+"
_WORDS = regex.compile(
    rf"\s+|{_SCRIPTS}|[^\s\p{{Han}}\p{{Hiragana}}\p{{Katakana}}\p{{Hangul}}\p{{Latin}}\p{{N}}]+"
)
MIN_WORDS = 12  # fewer words than this: too few to judge their order
SPACED = 20  # a line with a space per 20 characters or more is written with spaces between words


def tokens(line: str) -> list[str]:
    """A line's character tokens: each character, with a whitespace run as one ``▁``."""
    return list(_WHITESPACE.sub(SPACE, line.strip()).translate(_PRIVATE))


def lines_of(text: str) -> Iterator[list[str]]:
    """The token lists of a document's non-empty lines."""
    for line in text.splitlines():
        line_tokens = tokens(line)
        if line_tokens:
            yield line_tokens


# While training, an n-gram is a string of n one-character tokens: <s>, </s> and <unk> stand as
# private-use characters (which ``tokens`` keeps out of the text), a third of the memory of tuples.
_B, _E, _U = "\ue000", "\ue001", "\ue002"
_NAMES = {_B: BOS, _E: EOS, _U: UNK}
_PRIVATE = str.maketrans({c: "\ufffd" for c in _NAMES})


def write_arpa(texts: Iterable[str], order: int, path: str | Path) -> None:
    """Write an interpolated Kneser-Ney character model of ``order`` over ``texts`` as ARPA."""
    counts: list[Counter[str]] = [Counter() for _ in range(order + 1)]
    for text in texts:
        for line in lines_of(text):
            padded = _B + "".join(line) + _E
            for n in range(1, order + 1):
                counts[n].update(padded[start : start + n] for start in range(len(padded) - n + 1))
    if not counts[1]:
        raise ValueError("no text to train on")
    adjusted = _adjusted_counts(counts, order)
    del counts
    with open(path, "w", encoding="utf-8") as out:
        _write_arpa(adjusted, order, out)


def _adjusted_counts(counts: list[Counter[str]], order: int) -> list[Counter[str]]:
    """Kneser-Ney's counts: raw counts at the highest order and for n-grams that start a line, the
    number of distinct left extensions for every other n-gram."""
    adjusted: list[Counter[str]] = [Counter() for _ in range(order + 1)]
    adjusted[order] = counts[order]
    for n in range(order, 1, -1):
        adjusted[n - 1].update(gram[1:] for gram in counts[n])
        for gram, count in counts[n - 1].items():
            if gram[0] == _B:
                adjusted[n - 1][gram] = count
    return adjusted


def _discount(counts: Counter[str]) -> float:
    """Kneser-Ney's discount for one order from its counts of counts, n1 / (n1 + 2 n2)."""
    of = Counter(counts.values())
    n1, n2 = of[1], of[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def _backoffs(grams: Counter[str], discount: float) -> dict[str, float]:
    """Each context's interpolation weight, discount x distinct continuations / their count."""
    types: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for gram, count in grams.items():
        types[gram[:-1]] += 1
        totals[gram[:-1]] += count
    return {context: discount * types[context] / totals[context] for context in types}


def _write_arpa(adjusted: list[Counter[str]], order: int, out: IO[str]) -> None:
    """Interpolated probabilities and backoff weights of every seen n-gram, in ARPA's layout, one
    order at a time (each needs only the order below it)."""
    discounts = [0.0, *(_discount(adjusted[n]) for n in range(1, order + 1))]
    vocab = [gram for gram in adjusted[1] if gram != _B]
    total = sum(adjusted[1][gram] for gram in vocab)
    uniform = discounts[1] * len(vocab) / total / (len(vocab) + 1)  # the discounted mass, shared with <unk>
    lower = {gram: max(adjusted[1][gram] - discounts[1], 0) / total + uniform for gram in vocab}
    lower[_U], lower[_B] = uniform, 0.0  # <s> is never predicted: ARPA's -99
    sizes = [len(lower), *(len(adjusted[n]) for n in range(2, order + 1))]
    out.write("\\data\\\n" + "".join(f"ngram {n}={size}\n" for n, size in enumerate(sizes, 1)) + "\n")
    for n in range(1, order + 1):
        backoffs = _backoffs(adjusted[n + 1], discounts[n + 1]) if n < order else {}
        if n > 1:
            gammas = _backoffs(adjusted[n], discounts[n])
            sums: Counter[str] = Counter()
            for gram, count in adjusted[n].items():
                sums[gram[:-1]] += count
            lower = {
                gram: max(count - discounts[n], 0) / sums[gram[:-1]] + gammas[gram[:-1]] * lower[gram[1:]]
                for gram, count in adjusted[n].items()
            }
        out.write(f"\\{n}-grams:\n")
        for gram, prob in lower.items():
            logp = -99.0 if prob <= 0 else math.log10(prob)
            line = f"{logp:.7f}\t{' '.join(_NAMES.get(c, c) for c in gram)}"
            if gram in backoffs:
                line += f"\t{math.log10(backoffs[gram]):.7f}"
            out.write(line + "\n")
        out.write("\n")
    out.write("\\end\\\n")


class ArpaModel:
    """A backoff ARPA model scored in Python: log10 P(line) as KenLM's ``score(line, bos, eos)``."""

    def __init__(self, path: str | Path) -> None:
        self.probs: dict[tuple[str, ...], float] = {}
        self.backoffs: dict[tuple[str, ...], float] = {}
        self.order = 0
        with open(path, encoding="utf-8") as lines:
            for raw in lines:
                fields = raw.rstrip("\n").split("\t")
                if len(fields) < 2 or raw.startswith("\\"):
                    continue
                gram = tuple(fields[1].split(" "))
                self.probs[gram] = float(fields[0])
                if len(fields) == 3:
                    self.backoffs[gram] = float(fields[2])
                self.order = max(self.order, len(gram))

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a space-separated token sequence, after ``<s>`` (``bos``) or no
        context, and with ``</s>`` at its end (``eos``): KenLM's ``Model.score``."""
        history: tuple[str, ...] = (BOS,) if bos else ()
        total = 0.0
        for token in (*(sentence.split(" ") if sentence else ()), *((EOS,) if eos else ())):
            total += self._log10(history, token if (token,) in self.probs else UNK)
            history = (*history, token)[-(self.order - 1) :]
        return total

    def _log10(self, history: tuple[str, ...], token: str) -> float:
        backoff = 0.0
        for start in range(len(history) + 1):
            context = history[start:]
            prob = self.probs.get((*context, token))
            if prob is not None:
                return prob + backoff
            backoff += self.backoffs.get(context, 0.0)
        raise AssertionError("unreachable: every token has a unigram")


@dataclass(frozen=True)
class Scores:
    """A document's scores under a reference model (see ``CharModel.scores``)."""

    bits_per_character: float  # the n-gram model's cross-entropy: log2 of its perplexity per token
    context_ratio: float  # bits under the n-gram model / bits under its unigram level alone
    word_order_gain: float | None  # bits per character its word order saves; None: too few words


class CharModel:
    """A character model's ARPA file, scored with KenLM when its Python module is installed (the
    ``clean`` extra: ``ufal-kenlm``), else with ``ArpaModel``."""

    def __init__(self, path: str | Path) -> None:
        self.lm = _load(path)
        self._unigram: dict[str, float] = {}  # token -> log10 P under the unigram level alone

    def scores(self, text: str) -> Scores:
        bits, predicted, unigram_bits = self._bits(text, unigram=True)
        if not predicted:
            return Scores(0.0, 0.0, None)
        return Scores(bits / predicted, bits / unigram_bits, self._word_order_gain(text, bits / predicted))

    def bits_per_character(self, text: str) -> float:
        bits, predicted, _ = self._bits(text)
        return bits / predicted if predicted else 0.0

    def _bits(self, text: str, unigram: bool = False) -> tuple[float, int, float]:
        """Bits of ``text``'s lines under the model, the tokens predicted, and (``unigram``) their
        bits under the model's unigram level alone."""
        log10_total, predicted, lines = 0.0, 0, 0
        seen: Counter[str] = Counter()
        for line in lines_of(text):
            log10_total += self.lm.score(" ".join(line), bos=True, eos=True)
            predicted += len(line) + 1
            lines += 1
            if unigram:
                seen.update(line)
        log10_unigram = sum(n * self._unigram_log10(token) for token, n in seen.items())
        log10_unigram += lines * self._unigram_log10(EOS)
        return -log10_total * LOG2_10, predicted, -log10_unigram * LOG2_10

    def _unigram_log10(self, token: str) -> float:
        if token not in self._unigram:
            self._unigram[token] = self.lm.score("" if token == EOS else token, bos=False, eos=token == EOS)
        return self._unigram[token]

    def _word_order_gain(self, text: str, bits_per_character: float) -> float | None:
        """Bits per character ``text``'s own word order saves: its score with the words of each line
        shuffled minus its score as written. Natural text loses when shuffled; text whose words are
        already in random order does not. None for a text of fewer than ``MIN_WORDS`` words."""
        shuffled, words = reordered(text, zlib.crc32(text.encode("utf-8")))
        if words < MIN_WORDS:
            return None
        return self.bits_per_character(shuffled) - bits_per_character


def _load(path: str | Path):
    """The ARPA model at ``path``: KenLM's when its Python module is installed, else ``ArpaModel``."""
    try:
        import kenlm  # ufal-kenlm's wheel provides it
    except ImportError:
        return ArpaModel(path)
    config = kenlm.Config()
    config.show_progress = False  # its loading bar on stderr, once per worker
    config.arpa_complain = kenlm.ARPALoadComplain.NONE
    return kenlm.Model(str(path), config)


def reordered(text: str, seed: int) -> tuple[str, int]:
    """``text`` with the words of each line shuffled in place, and how many words it has in lines of
    two words or more (the words whose order is judged). Words are
    what whitespace separates, in a line written with spaces between words; runs of one script in a
    line written without (Japanese, at fewer than one space per ``SPACED`` characters)."""
    rng = random.Random(seed)
    lines, count = [], 0
    for line in text.splitlines():
        spaced = line.count(" ") * SPACED >= len(line)
        pieces = regex.split(r"(\s+)", line) if spaced else _WORDS.findall(line)
        at = [i for i, piece in enumerate(pieces) if piece and not piece.isspace()]
        words = [pieces[i] for i in at]
        rng.shuffle(words)
        for i, word in zip(at, words, strict=True):
            pieces[i] = word
        lines.append("".join(pieces))
        count += len(at) if len(at) > 1 else 0  # a one-word line has no order to judge
    return "\n".join(lines), count
