"""The cleaning report: per filter, how many documents it removed and examples of why.

Every filter appears, in pipeline order, even with a zero count, so reports of different runs
line up. A few examples per filter (line number, document id, reason) make a threshold easy to
judge without opening the input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    languages_out: dict[str, int] = field(
        default_factory=dict
    )  # plain dicts: datatrove's asdict breaks a Counter
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REMOVAL_REASONS, 0))
    examples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {r: [] for r in REMOVAL_REASONS}
    )

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

    def add(self, part: dict[str, Any]) -> None:
        """Add one task's ``ReportPart`` (as saved). Examples stay the earliest in input order,
        whatever the tasks; they name positions until ``resolve``."""
        self.documents_in += part["documents_in"]
        self.documents_out += part["documents_out"]
        self.boilerplate_lines_removed += part["boilerplate_lines"]
        self.documents_rewritten += part["rewritten"]
        for lang, count in part["languages"].items():
            self.languages_out[lang] = self.languages_out.get(lang, 0) + count
        for reason, count in part["removed"].items():
            self.removed[reason] += count
        for reason, examples in part["examples"].items():
            merged = self.examples[reason] + [
                dict(zip(("position", "id", "why", "first"), e, strict=True)) for e in examples
            ]
            self.examples[reason] = sorted(merged, key=lambda e: e["position"])[: self.max_examples]

    def positions(self) -> list[int]:
        """The positions the examples name (theirs and their earlier copies')."""
        return [
            p
            for examples in self.examples.values()
            for e in examples
            for p in (e["position"], e["first"])
            if p is not None
        ]

    def resolve(self, describe: Callable[[int], dict[str, Any]]) -> None:
        """Name each example's place (file, line) instead of its position; ``describe`` maps a position
        to ``{file, line, place}``."""
        for reason, examples in self.examples.items():
            self.examples[reason] = [
                {
                    **{k: v for k, v in describe(e["position"]).items() if k != "place"},
                    "id": e["id"],
                    "why": e["why"]
                    if e["first"] is None
                    else e["why"].format(first=describe(e["first"])["place"]),
                }
                for e in examples
            ]

    def summary(self) -> str:
        """A few lines for a terminal: totals, then each filter that removed something."""
        lines = [f"{self.documents_in} documents in, {self.documents_out} kept ({self.seconds:.1f} s)"]
        lines += [f"  {r:<16} {n:>8}" for r, n in self.removed.items() if n]
        return "\n".join(lines)

    @classmethod
    def read(cls, path: str | os.PathLike) -> CleanReport:
        """A report as ``write`` saved it."""
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        report = cls(
            input=saved["input"], output=saved["output"], workers=saved["workers"], config=saved["config"]
        )
        report.documents_in, report.documents_out = saved["documents_in"], saved["documents_out"]
        report.boilerplate_lines_removed = saved["boilerplate_lines_removed"]
        report.documents_rewritten, report.seconds = saved["documents_rewritten"], saved["seconds"]
        report.languages_out = dict(saved["languages_out"])
        report.removed = {r: saved["removed"][r]["count"] for r in REMOVAL_REASONS}
        report.examples = {r: saved["removed"][r]["examples"] for r in REMOVAL_REASONS}
        return report

    def write(self, path: str | os.PathLike) -> None:
        """Write the JSON report to ``path`` atomically."""
        write_json_atomic(path, self.to_dict())


@dataclass
class ReportPart:
    """What one task saw: counts, and its first examples of each removal by position (a ``why`` may
    name a first copy as ``{first}``, a position resolved to a place when the parts are merged)."""

    max_examples: int = 5
    documents_in: int = 0
    documents_out: int = 0
    boilerplate_lines: int = 0
    rewritten: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[int, Any, str, int | None]]] = field(default_factory=dict)

    def remove(self, reason: str, position: int, doc_id: Any, why: str, first: int | None = None) -> None:
        self.removed[reason] = self.removed.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < self.max_examples:
            examples.append((position, doc_id, why, first))

    def keep(self, lang: str | None, boilerplate_lines: int, rewritten: bool) -> None:
        self.documents_out += 1
        self.boilerplate_lines += boilerplate_lines
        self.rewritten += rewritten
        if lang is not None:
            self.languages[lang] = self.languages.get(lang, 0) + 1

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = {
            name: getattr(self, name)
            for name in ("documents_in", "documents_out", "boilerplate_lines", "rewritten")
        }
        saved |= {"languages": dict(self.languages), "removed": dict(self.removed), "examples": self.examples}
        write_json_atomic(path, saved)
