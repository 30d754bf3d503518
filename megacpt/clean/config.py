"""``CleanConfig``: what decides which documents survive and how their text is rewritten, checked
on construction (light imports only, so ``megacpt clean --help`` answers at once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from megacpt.clean.filters import QualityConfig
from megacpt.clean.langid import known_languages
from megacpt.clean.normalize import DEFAULT_BOILERPLATE, Normalizer
from megacpt.errors import UserError

REFERENCE_MODEL = "perplexity reference model"  # a reference model folder's kind, for megacpt.atomic
MAX_ORDER = 6  # the highest n-gram order ufal-kenlm's KenLM is built for


@dataclass(frozen=True)
class PerplexityRule:
    """What one language's documents must meet under its reference model: bits per character and
    context ratio at most their cuts, word-order gain at least its cut (each cut resolved to a
    number; ``None``: not checked)."""

    language: str
    model_dir: Path
    max_bits_per_character: float | None
    max_context_ratio: float | None
    min_word_order_gain: float | None
    cuts: tuple[str, str, str]  # the three cuts as given, for the report


@dataclass(frozen=True)
class CleanConfig:
    """Everything that decides which documents survive and how their text is rewritten."""

    text_key: str = "text"
    normalization: str = "NFKC"
    boilerplate: tuple[str, ...] = DEFAULT_BOILERPLATE
    languages: tuple[str, ...] = ()  # keep only these language tags; empty: no language filter
    min_lang_prob: float = 0.5
    quality: QualityConfig = field(default_factory=QualityConfig)
    exact_dedup: bool = True
    near_dedup: bool = True
    near_dup_threshold: float = 0.8
    perplexity: tuple[PerplexityRule, ...] = ()  # per language: a reference model and its cuts
    num_perm: int = 128
    shingle_chars: int = 5
    max_line_bytes: int = 8 << 20

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_lang_prob <= 1.0:
            raise UserError(f"min_lang_prob must be between 0 and 1, got {self.min_lang_prob}")
        if self.max_line_bytes < 1 or self.num_perm < 16 or self.shingle_chars < 1:
            raise UserError("max_line_bytes and shingle_chars must be >= 1 and num_perm >= 16")
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise UserError(f"near-duplicate threshold must be in (0, 1], got {self.near_dup_threshold}")
        Normalizer(self.normalization, self.boilerplate)  # fail here, not in a worker's initializer
        unruled = [rule.language for rule in self.perplexity if rule.language not in self.languages]
        if unruled:
            raise UserError(
                f"a perplexity model for {unruled[0]} needs {unruled[0]} among the kept languages (--lang): "
                f"language id chooses each document's model"
            )
        unknown = [lang for lang in self.languages if lang not in known_languages()]
        if unknown:
            raise UserError(
                f"unknown language code {unknown[0]!r}: py3langid identifies ISO 639-1 codes such as ko, ja, en, zh"
            )
