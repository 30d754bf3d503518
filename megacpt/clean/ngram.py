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
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
    return list(_WHITESPACE.sub(SPACE, line.strip()))


def lines_of(text: str) -> Iterator[list[str]]:
    """The token lists of a document's non-empty lines."""
    for line in text.splitlines():
        line_tokens = tokens(line)
        if line_tokens:
            yield line_tokens


def train_arpa(texts: Iterable[str], order: int) -> str:
    """An interpolated Kneser-Ney character model of ``order`` over ``texts``, as ARPA text."""
    counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    for text in texts:
        for line in lines_of(text):
            padded = (BOS, *line, EOS)
            for n in range(1, order + 1):
                for start in range(len(padded) - n + 1):
                    counts[n][padded[start : start + n]] += 1
    if not counts[1]:
        raise ValueError("no text to train on")
    adjusted = _adjusted_counts(counts, order)
    return _arpa(adjusted, order)


def _adjusted_counts(counts: list[Counter[tuple[str, ...]]], order: int) -> list[Counter[tuple[str, ...]]]:
    """Kneser-Ney's counts: raw counts at the highest order and for n-grams that start a line, the
    number of distinct left extensions for every other n-gram."""
    adjusted: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    adjusted[order] = counts[order]
    for n in range(order, 1, -1):
        for gram in counts[n]:
            adjusted[n - 1][gram[1:]] += 1
        for gram, count in counts[n - 1].items():
            if gram[0] == BOS:
                adjusted[n - 1][gram] = count
    return adjusted


def _discount(counts: Counter[tuple[str, ...]]) -> float:
    """Kneser-Ney's discount for one order from its counts of counts, n1 / (n1 + 2 n2)."""
    of = Counter(counts.values())
    n1, n2 = of[1], of[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def _arpa(adjusted: list[Counter[tuple[str, ...]]], order: int) -> str:
    """Interpolated probabilities and backoff weights of every seen n-gram, in ARPA's layout."""
    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    backoffs: dict[tuple[str, ...], float] = {}
    vocab = [gram for gram in adjusted[1] if gram != (BOS,)]
    total = sum(adjusted[1][gram] for gram in vocab)
    d1 = _discount(adjusted[1])
    uniform = d1 * len(vocab) / total / (len(vocab) + 1)  # the discounted mass, shared with <unk>
    for gram in vocab:
        probs[1][gram] = max(adjusted[1][gram] - d1, 0) / total + uniform
    probs[1][(UNK,)] = uniform
    probs[1][(BOS,)] = 0.0  # never predicted; ARPA's -99
    for n in range(2, order + 1):
        discount = _discount(adjusted[n])
        by_context: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
        for gram in adjusted[n]:
            by_context[gram[:-1]].append(gram)
        for context, grams in by_context.items():
            context_total = sum(adjusted[n][g] for g in grams)
            gamma = discount * len(grams) / context_total
            backoffs[context] = gamma
            lower = probs[n - 1]
            for gram in grams:
                probs[n][gram] = (
                    max(adjusted[n][gram] - discount, 0) / context_total + gamma * lower[gram[1:]]
                )
    out = ["\\data\\", *(f"ngram {n}={len(probs[n])}" for n in range(1, order + 1)), ""]
    for n in range(1, order + 1):
        out.append(f"\\{n}-grams:")
        for gram, prob in probs[n].items():
            logp = -99.0 if prob <= 0 else math.log10(prob)
            line = f"{logp:.7f}\t{' '.join(gram)}"
            if n < order and gram in backoffs:
                line += f"\t{math.log10(backoffs[gram]):.7f}"
            out.append(line)
        out.append("")
    out.append("\\end\\")
    return "\n".join(out) + "\n"


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
        bits, unigram_bits, predicted = self._bits(text)
        if not predicted:
            return Scores(0.0, 0.0, None)
        return Scores(bits / predicted, bits / unigram_bits, self._word_order_gain(text, bits / predicted))

    def bits_per_character(self, text: str) -> float:
        bits, _, predicted = self._bits(text)
        return bits / predicted if predicted else 0.0

    def _bits(self, text: str) -> tuple[float, float, int]:
        """Bits of ``text``'s lines under the model and under its unigram level; tokens predicted."""
        log10_total, log10_unigram, predicted = 0.0, 0.0, 0
        for line in lines_of(text):
            log10_total += self.lm.score(" ".join(line), bos=True, eos=True)
            log10_unigram += sum(map(self._unigram_log10, line)) + self._unigram_log10(EOS)
            predicted += len(line) + 1
        return -log10_total * LOG2_10, -log10_unigram * LOG2_10, predicted

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
    """``text`` with the words of each line shuffled in place, and how many words it has. Words are
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
        count += len(at)
    return "\n".join(lines), count
