"""The cleaning report: per filter, how many documents it removed and examples of why.

Every filter appears, in pipeline order, even with a zero count, so reports of different runs
line up. A few examples per filter (line number, document id, reason) make a threshold easy to
judge without opening the input.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from megacpt.atomic import write_json_atomic
from megacpt.clean.filters import FILTERS

# Pipeline order: input problems, normalisation, language, quality, perplexity, duplicates.
REMOVAL_REASONS: tuple[str, ...] = (
    "invalid_utf8",
    "malformed_json",
    "missing_key",
    "huge_document",
    "empty",
    "language",
    *FILTERS,
    "perplexity",
    "word_order",
    "exact_duplicate",
    "near_duplicate",
)


@dataclass
class CleanReport:
    """Counts for one run of the cleaning stage; ``to_dict`` is what lands in the JSON file."""

    input: list[str]
    output: str
    workers: int
    config: dict[str, Any]
    max_examples: int = 5
    documents_in: int = 0
    documents_out: int = 0
    boilerplate_lines_removed: int = 0
    documents_rewritten: int = 0  # kept documents whose text normalisation changed
    seconds: float = 0.0
    languages_out: Counter = field(default_factory=Counter)
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REMOVAL_REASONS, 0))
    examples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {r: [] for r in REMOVAL_REASONS}
    )

    def remove(self, reason: str, file: str, line: int, doc_id: Any, why: str) -> None:
        self.removed[reason] += 1
        if len(self.examples[reason]) < self.max_examples:
            self.examples[reason].append({"file": file, "line": line, "id": doc_id, "why": why})

    def keep(self, lang: str | None, boilerplate_lines: int, rewritten: bool) -> None:
        self.documents_out += 1
        self.boilerplate_lines_removed += boilerplate_lines
        self.documents_rewritten += rewritten
        if lang is not None:
            self.languages_out[lang] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "documents_in": self.documents_in,
            "documents_out": self.documents_out,
            "documents_removed": self.documents_in - self.documents_out,
            "boilerplate_lines_removed": self.boilerplate_lines_removed,
            "documents_rewritten": self.documents_rewritten,
            "languages_out": dict(sorted(self.languages_out.items())),
            "removed": {r: {"count": self.removed[r], "examples": self.examples[r]} for r in REMOVAL_REASONS},
            "workers": self.workers,
            "seconds": self.seconds,
            "config": self.config,
        }

    def summary(self) -> str:
        """A few lines for a terminal: totals, then each filter that removed something."""
        lines = [f"{self.documents_in} documents in, {self.documents_out} kept ({self.seconds:.1f} s)"]
        lines += [f"  {r:<16} {n:>8}" for r, n in self.removed.items() if n]
        return "\n".join(lines)

    def write(self, path: str) -> None:
        """Write the JSON report to ``path`` atomically."""
        write_json_atomic(path, self.to_dict())
