"""Before/after statistics of an expansion on held-out text: a table and a PNG plot.

Per language: the token ratio (tokens with the new tokenizer ÷ tokens with the base, the figure
RedWhale reports), characters per token, and the byte-fallback rate (share of tokens that stand
for raw bytes: SentencePiece ``<0xNN>`` pieces, or byte-level tokens that are not whole UTF-8
characters). Counted without BOS/EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from megacpt.tokenizer.base import BaseVocab


@dataclass
class LanguageStats:
    """One language's held-out statistics before and after the expansion."""

    language: str
    documents: int
    characters: int
    base_tokens: int
    new_tokens: int
    base_byte_tokens: int
    new_byte_tokens: int

    @property
    def token_ratio(self) -> float:
        return self.new_tokens / self.base_tokens if self.base_tokens else float("nan")

    def chars_per_token(self, tokens: int) -> float:
        return self.characters / tokens if tokens else float("nan")

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            **asdict(self),
            "token_ratio": self.token_ratio,
            "base_chars_per_token": self.chars_per_token(self.base_tokens),
            "new_chars_per_token": self.chars_per_token(self.new_tokens),
            "base_byte_fallback_rate": self.base_byte_tokens / max(self.base_tokens, 1),
            "new_byte_fallback_rate": self.new_byte_tokens / max(self.new_tokens, 1),
        }


def measure(base: BaseVocab, keys: Sequence[str], language: str, texts: Sequence[str]) -> LanguageStats:
    """Tokenise ``texts`` with the base and with the merged vocabulary (``keys`` appended)."""
    before = base.encode(texts, None)
    after = base.encode(texts, keys)
    byte_before = base.byte_ids([])
    byte_after = base.byte_ids(keys)
    return LanguageStats(
        language=language,
        documents=len(texts),
        characters=sum(len(t) for t in texts),
        base_tokens=sum(len(ids) for ids in before),
        new_tokens=sum(len(ids) for ids in after),
        base_byte_tokens=sum(i in byte_before for ids in before for i in ids),
        new_byte_tokens=sum(i in byte_after for ids in after for i in ids),
    )


def markdown_table(stats: Sequence[LanguageStats]) -> str:
    """The statistics as a Markdown table, one row per language."""
    lines = [
        "| language | docs | chars | base tokens | new tokens | token ratio | chars/token base → new "
        "| byte fallback base → new |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stats:
        d = s.as_dict()
        lines.append(
            f"| {s.language} | {s.documents} | {s.characters} | {s.base_tokens} | {s.new_tokens} "
            f"| {s.token_ratio:.3f} | {d['base_chars_per_token']:.2f} → {d['new_chars_per_token']:.2f} "
            f"| {d['base_byte_fallback_rate']:.2%} → {d['new_byte_fallback_rate']:.2%} |"
        )
    return "\n".join(lines) + "\n"


def plot(stats: Sequence[LanguageStats], path: Path) -> None:
    """Bar charts of characters per token and byte-fallback rate, before and after, per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.language for s in stats]
    xs = range(len(stats))
    fig, axes = plt.subplots(1, 2, figsize=(4 + 2 * len(stats), 3.5))
    panels = [
        ("characters per token", "base_chars_per_token", "new_chars_per_token"),
        ("byte-fallback rate", "base_byte_fallback_rate", "new_byte_fallback_rate"),
    ]
    for ax, (title, before, after) in zip(axes, panels):
        rows = [s.as_dict() for s in stats]
        ax.bar([x - 0.2 for x in xs], [float(r[before]) for r in rows], width=0.4, label="base")
        ax.bar([x + 0.2 for x in xs], [float(r[after]) for r in rows], width=0.4, label="expanded")
        ax.set_xticks(list(xs), names)
        ax.set_title(title)
    for x, s in zip(xs, stats):
        axes[0].annotate(f"ratio {s.token_ratio:.2f}", (x, 0), ha="center", va="bottom", fontsize=8)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
