"""The quickstart's report: ``report.md`` and ``report.png``, built from the files its runs wrote.

Inputs are plain files, so the report can be rebuilt (and tested) without training: the base
model's 0-step validation (``base_eval/metrics.jsonl``: ``val_bpb/<lang>`` with its own
tokenizer), the continual-pretraining run's ``metrics.jsonl`` (training loss and stage per logged
step; ``val_bpb/<lang>`` at step 0, i.e. right after the resize, and later) and ``stages.json``,
the tokenizer's ``expansion.json`` (held-out token ratios) and the greedy continuations of a few
held-out prompts by the base and the final model (``continuations/``: ``prompts.jsonl`` with each
prompt's language, ``base.jsonl`` and ``final.jsonl`` as ``megacpt generate`` writes them). Bits
per byte compares models with different tokenizers; the yardstick is the base model on the same held-out documents. The curves
are read and drawn by ``megacpt.training.curves``, as the trainer's own ``loss.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megacpt.atomic import atomic_path, write_atomic
from megacpt.errors import UserError
from megacpt.recipes.corpora import HELDOUT_SOURCES
from megacpt.training.curves import (
    draw_stages,
    draw_validation,
    read_metrics,
    stage_bounds,
    train_loss,
    validation,
)

TARGET = ("ko", "ja")
# English may end at most this far above the base model (forgetting): the replay's job. Ending
# below it is no failure: the English replay is WikiText-2, as the English held-out text is.
ENGLISH_TOLERANCE = 0.05


@dataclass
class Summary:
    """What the report concludes (bits per byte per language), and where it was written."""

    markdown: Path
    png: Path
    base: dict[str, float]  # the base model with its own tokenizer
    start: dict[str, float]  # right after the resize, before any update
    end: dict[str, float]
    checks: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for lang in TARGET:
            if lang in self.end and lang in self.base:
                self.checks[f"{lang} bits per byte below the base model's"] = self.end[lang] < self.base[lang]
        if "en" in self.end and "en" in self.base:
            self.checks[f"en bits per byte at most {ENGLISH_TOLERANCE:.0%} above the base model's"] = (
                self.end["en"] / self.base["en"] - 1.0 <= ENGLISH_TOLERANCE
            )

    def verdicts(self) -> list[str]:
        lines = [f"{'PASS' if ok else 'FAIL'}: {what}" for what, ok in self.checks.items()]
        for lang in self.end:
            base = self.base.get(lang)
            ratio = f" ({self.end[lang] / base:.3f} x base {base:.3f})" if base else ""
            lines.append(f"  {lang}: {self.start[lang]:.3f} -> {self.end[lang]:.3f} bits per byte{ratio}")
        return lines


def token_ratios(expansion_json: Path) -> list[dict[str, Any]]:
    """Held-out token counts per language with the base and the expanded tokenizer."""
    return [
        {
            "language": e["language"],
            "base": e["base_tokens"],
            "expanded": e["new_tokens"],
            "ratio": e["token_ratio"],
        }
        for e in json.loads(expansion_json.read_text(encoding="utf-8"))["report"]
    ]


def read_continuations(folder: Path) -> list[dict[str, str]]:
    """Per prompt: its language, the prompt, and the base's and the final model's continuations."""
    try:
        rows = {
            name: [
                json.loads(line)
                for line in (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
            ]
            for name in ("prompts", "base", "final")
        }
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{folder}: unreadable continuations ({err})") from err
    if not len(rows["prompts"]) == len(rows["base"]) == len(rows["final"]):
        raise UserError(f"{folder}: prompts.jsonl, base.jsonl and final.jsonl differ in length")
    try:
        return [
            {"lang": p["lang"], "prompt": p["text"], "base": b["continuation"], "final": f["continuation"]}
            for p, b, f in zip(rows["prompts"], rows["base"], rows["final"], strict=True)
        ]
    except (KeyError, TypeError) as err:
        raise UserError(f"{folder}: a continuation line lacks its field {err}") from err


def _inline(text: str) -> str:
    """``text`` on one markdown line, as code: whitespace runs become one space, backticks quotes."""
    return "`" + " ".join(text.split()).replace("`", "'") + "`"


def _markdown(
    summary: Summary,
    cpt_loss: list[tuple[int, float]],
    bounds: list[tuple[str, int, int]],
    ratios: list[dict[str, Any]],
    expansion: dict[str, Any],
    bpb: dict[str, list[tuple[int, float]]],
    continuations: list[dict[str, str]],
) -> str:
    out = [
        "# Quickstart report",
        "",
        f"Continual pretraining into Korean and Japanese with {expansion['num_new_tokens']:,} new tokens "
        f"({expansion['base_vocab_size']:,} -> {expansion['new_vocab_size']:,}), {len(bounds)} stage(s), "
        "bits per byte on held-out text (summed NLL / ln 2 / UTF-8 bytes; the base model uses its own tokenizer).",
        "",
        "![loss by stage, bits per byte, token ratios](report.png)",
        "",
        "## Checks",
        "",
    ]
    out += [("  - " if line.startswith(" ") else "- ") + line.strip() for line in summary.verdicts()]
    out += [
        "",
        "## Bits per byte on held-out text",
        "",
        "| language | base model (own tokenizer) | start (after resize) | end | end / base |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for lang in summary.end:
        base = summary.base.get(lang)
        cells = f"{base:.4f}" if base else "-", f"{summary.end[lang] / base:.3f}" if base else "-"
        out.append(
            f"| {lang} | {cells[0]} | {summary.start[lang]:.4f} | {summary.end[lang]:.4f} | {cells[1]} |"
        )
    out += ["", "Held-out text, from other sources than the tokenizer's and the training's:", ""]
    out += [f"- {lang}: {HELDOUT_SOURCES[lang]}" for lang in summary.end if lang in HELDOUT_SOURCES]
    out += [
        "",
        "## Training loss by stage, and held-out bits per byte at its end",
        "",
        "Training losses are of different batches, so only held-out bits per byte tell whether a stage helped.",
        "",
        "| stage | steps | first loss | last loss | " + " | ".join(f"{lang} bpb" for lang in bpb) + " |",
        "| --- | --- | ---: | ---: |" + " ---: |" * len(bpb),
    ]
    for name, start, end in bounds:
        inside = [loss for step, loss in cpt_loss if start < step <= end]
        first, last = (f"{inside[0]:.3f}", f"{inside[-1]:.3f}") if inside else ("-", "-")
        at_end = [next((f"{v:.4f}" for step, v in points if step == end), "-") for points in bpb.values()]
        out.append(f"| {name} | {start + 1}-{end} | {first} | {last} | " + " | ".join(at_end) + " |")
    out += [
        "",
        "## Token ratios (expanded ÷ base tokenizer, held-out text)",
        "",
        "| language | base tokens | expanded tokens | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    out += [f"| {r['language']} | {r['base']:,} | {r['expanded']:,} | {r['ratio']:.3f} |" for r in ratios]
    out += ["", "## Greedy continuations of held-out prompts (base model, then final model)", ""]
    for c in continuations:
        out += [
            f"- {c['lang']}: {_inline(c['prompt'])}",
            f"  - base: {_inline(c['base'])}",
            f"  - final: {_inline(c['final'])}",
        ]
    return "\n".join(out) + "\n"


def _plot(
    path: Path,
    cpt_loss: list[tuple[int, float]],
    bounds: list[tuple[str, int, int]],
    bpb: dict[str, list[tuple[int, float]]],
    base: dict[str, float],
    ratios: list[dict[str, Any]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_bpb, ax_ratio) = plt.subplots(1, 3, figsize=(17, 4.5))
    draw_stages(ax_loss, cpt_loss, bounds)
    draw_validation(ax_bpb, bpb, bounds, "bits per byte", reference=base)
    ax_ratio.barh([r["language"] for r in ratios], [r["ratio"] for r in ratios], color="C0")
    ax_ratio.axvline(1.0, color="grey", linewidth=0.5)
    ax_ratio.set(title="held-out token ratio (expanded ÷ base)", xlabel="ratio")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, base_eval: Path, cpt_run: Path, tokenizer: Path, continuations: Path) -> Summary:
    """Write ``out/report.md`` and ``out/report.png``; returns the summary with its checks."""
    records = read_metrics(cpt_run / "metrics.jsonl")
    bpb = validation(records, "val_bpb")
    if not bpb or any(len(points) < 2 for points in bpb.values()):
        raise UserError(
            f"{cpt_run / 'metrics.jsonl'}: needs bits per byte at the start and the end of the run"
        )
    base = {
        lang: points[0][1]
        for lang, points in validation(read_metrics(base_eval / "metrics.jsonl"), "val_bpb").items()
    }
    bounds = stage_bounds(cpt_run / "stages.json")
    cpt_loss = train_loss(records)
    ratios = token_ratios(tokenizer / "expansion.json")
    expansion = json.loads((tokenizer / "expansion.json").read_text(encoding="utf-8"))
    summary = Summary(
        out / "report.md",
        out / "report.png",
        base,
        {lang: points[0][1] for lang, points in bpb.items()},
        {lang: points[-1][1] for lang, points in bpb.items()},
    )
    text = _markdown(summary, cpt_loss, bounds, ratios, expansion, bpb, read_continuations(continuations))
    write_atomic(summary.markdown, text)
    with atomic_path(summary.png) as tmp:
        _plot(tmp, cpt_loss, bounds, bpb, base, ratios)
    return summary
