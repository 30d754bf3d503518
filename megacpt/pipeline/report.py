"""The quickstart's report: ``report.md`` and ``report.png`` from the files the pipeline's runs wrote.

Inputs are plain files, so the report can be rebuilt (and tested) without training: each run's
``metrics.jsonl`` (``loss`` and ``stage`` per logged step, ``val_loss/<lang>`` records, step 0 being
the model before any update) and ``stages.json`` (stage names and lengths), the tokenizer's
``expansion.json`` (held-out token ratios) and the preprocessing ``<lang>.stats.json`` of the base
and expanded tokenizers (whole-corpus token counts per language). The curves are read and drawn by
``megacpt.training.curves``, as the trainer's own ``loss.png``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megacpt.errors import UserError
from megacpt.training.curves import (
    draw_stages,
    draw_validation,
    read_metrics,
    stage_bounds,
    train_loss,
    validation,
)

# English may end at most this far (relative) above where the run started: the replay's job is to
# keep English from being forgotten. It may well fall, since the run starts right after the resize,
# whose new output rows take probability mass from English tokens until training pushes them down;
# so it is also compared, both ways, with the English base model's own last validation loss (the
# same documents, split, seed and sample count, read with a tokenizer that encodes English alike).
ENGLISH_TOLERANCE = 0.05


def token_ratios(expansion_json: Path, base_stats: Path, expanded_stats: Path) -> list[dict[str, Any]]:
    """Token-count ratios (expanded ÷ base tokenizer): whole corpus per language, then held-out text."""
    rows = []
    for stats in sorted(expanded_stats.glob("*.stats.json")):
        lang = stats.name.removesuffix(".stats.json")
        base = base_stats / stats.name
        if base.is_file():
            old = json.loads(base.read_text(encoding="utf-8"))["tokens"]
            new = json.loads(stats.read_text(encoding="utf-8"))["tokens"]
            rows.append({"text": f"{lang} (whole corpus)", "base": old, "expanded": new, "ratio": new / old})
    for entry in json.loads(expansion_json.read_text(encoding="utf-8"))["report"]:
        rows.append({"text": f"{entry['language']} (held out)", "base": entry["base_tokens"],
                     "expanded": entry["new_tokens"], "ratio": entry["token_ratio"]})  # fmt: skip
    return rows


@dataclass
class Summary:
    """What the report concludes, and where it was written."""

    markdown: Path
    png: Path
    val_start: dict[str, float]
    val_end: dict[str, float]
    base_en: float | None = None  # the English base model's last validation loss, before the resize
    target: tuple[str, ...] = ("ko", "ja")
    checks: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for lang in self.target:
            if lang in self.val_start:
                self.checks[f"{lang} validation loss fell"] = self.val_end[lang] < self.val_start[lang]
        if "en" in self.val_start:
            self.checks["en validation loss at most 5% above its start"] = (
                self.change("en") <= ENGLISH_TOLERANCE
            )
            if self.base_en is not None:
                self.checks["en validation loss within 5% of the English base model's"] = (
                    abs(self.val_end["en"] / self.base_en - 1.0) <= ENGLISH_TOLERANCE
                )

    def change(self, lang: str) -> float:
        """Relative change of ``lang``'s validation loss from the run's start to its end."""
        return self.val_end[lang] / self.val_start[lang] - 1.0

    def verdicts(self) -> list[str]:
        lines = [f"{'PASS' if ok else 'FAIL'}: {what}" for what, ok in self.checks.items()]
        lines += [f"  {lang}: {self.val_start[lang]:.3f} -> {self.val_end[lang]:.3f} ({self.change(lang):+.1%})"
                  for lang in self.val_start]  # fmt: skip
        return lines


def _markdown(summary: Summary, base_val: dict[str, list[tuple[int, float]]], cpt_loss: list[tuple[int, float]],
              bounds: list[tuple[str, int, int]], ratios: list[dict[str, Any]]) -> str:  # fmt: skip
    out = ["# Quickstart report", "", "Continual pretraining of a tiny English Llama into Korean and Japanese "
           "(EEVE's seven stages, TP=2 on two CPU processes, 90/10 target/English mix).", "",
           "![loss by stage, validation loss, token ratios](report.png)", "", "## Checks", ""]  # fmt: skip
    out += [("  - " if line.startswith(" ") else "- ") + line.strip() for line in summary.verdicts()]
    if base_val.get("en"):
        (s0, v0), (s1, v1) = base_val["en"][0], base_val["en"][-1]
        base_line = f"English base model: validation loss {v0:.3f} at step {s0} -> {v1:.3f} at step {s1}"
        if "en" in summary.val_end:
            end = summary.val_end["en"]
            base_line += f"; this run ends English at {end:.3f} ({end / v1 - 1:+.1%})"
        out += ["", base_line + "."]
    out += [
        "",
        "## Validation loss per language",
        "",
        "| language | start | end | change |",
        "| --- | ---: | ---: | ---: |",
    ]
    out += [f"| {lang} | {summary.val_start[lang]:.3f} | {summary.val_end[lang]:.3f} | {summary.change(lang):+.1%} |"
            for lang in summary.val_start]  # fmt: skip
    out += [
        "",
        "## Training loss by stage",
        "",
        "| stage | steps | first loss | last loss |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, start, end in bounds:
        inside = [loss for step, loss in cpt_loss if start < step <= end]
        first, last = (f"{inside[0]:.3f}", f"{inside[-1]:.3f}") if inside else ("-", "-")
        out.append(f"| {name} | {start + 1}-{end} | {first} | {last} |")
    out += ["", "## Token ratios (expanded ÷ base tokenizer)", "", "| text | base tokens | expanded tokens | ratio |",
            "| --- | ---: | ---: | ---: |"]  # fmt: skip
    out += [f"| {r['text']} | {r['base']:,} | {r['expanded']:,} | {r['ratio']:.3f} |" for r in ratios]
    return "\n".join(out) + "\n"


def _plot(path: Path, cpt_loss: list[tuple[int, float]], bounds: list[tuple[str, int, int]],
          val: dict[str, list[tuple[int, float]]], ratios: list[dict[str, Any]]) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val, ax_ratio) = plt.subplots(1, 3, figsize=(16, 4.5))
    draw_stages(ax_loss, cpt_loss, bounds)
    draw_validation(ax_val, val, bounds)
    ax_ratio.barh([r["text"] for r in ratios], [r["ratio"] for r in ratios], color="C0")
    ax_ratio.axvline(1.0, color="grey", linewidth=0.5)
    ax_ratio.set(title="token ratio (expanded ÷ base)", xlabel="ratio")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def write_report(out: Path, base_run: Path, cpt_run: Path, tokenizer: Path, base_stats: Path,
                 expanded_stats: Path) -> Summary:  # fmt: skip
    """Write ``out/report.md`` and ``out/report.png``; returns the summary with its checks."""
    records = read_metrics(cpt_run / "metrics.jsonl")
    val = validation(records)
    if not val or any(len(points) < 2 for points in val.values()):
        raise UserError(f"{cpt_run / 'metrics.jsonl'}: needs validation loss at the start and end of the run")
    base_val = (
        validation(read_metrics(base_run / "metrics.jsonl")) if (base_run / "metrics.jsonl").is_file() else {}
    )
    bounds = stage_bounds(cpt_run / "stages.json")
    cpt_loss = train_loss(records)
    ratios = token_ratios(tokenizer / "expansion.json", base_stats, expanded_stats)
    summary = Summary(out / "report.md", out / "report.png", {lang: points[0][1] for lang, points in val.items()},
                      {lang: points[-1][1] for lang, points in val.items()},
                      base_val["en"][-1][1] if base_val.get("en") else None)  # fmt: skip
    text = _markdown(summary, base_val, cpt_loss, bounds, ratios)
    _write_atomic(summary.markdown, lambda p: p.write_text(text, encoding="utf-8"))
    _write_atomic(summary.png, lambda p: _plot(p, cpt_loss, bounds, val, ratios))
    return summary
