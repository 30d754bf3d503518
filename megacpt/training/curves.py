"""A run's curves from its files: ``metrics.jsonl`` and ``stages.json``, and the ``loss.png`` of them.

The trainer draws ``loss.png`` when a run ends (training loss with each stage shaded, and the
validation loss and bits per byte of each language with the stage boundaries); the quickstart report reads the same
series. ``metrics.jsonl`` is appended to across resumes, so a step logged twice (a run killed after
its last checkpoint and rerun) keeps its latest record. matplotlib draws, with the Agg backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from megacpt.atomic import atomic_path
from megacpt.errors import UserError


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a missing file is a ``UserError``."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (has the run finished?)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bounds_of(stages: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(name, first step, last step) of each stage, from (name, steps) in order."""
    bounds, start = [], 0
    for name, steps in stages:
        bounds.append((name, start, start + steps))
        start += steps
    return bounds


def stage_bounds(stages_json: Path) -> list[tuple[str, int, int]]:
    """(name, first step, last step) of each stage, from a run's ``stages.json``."""
    stages = json.loads(stages_json.read_text(encoding="utf-8"))
    return bounds_of([(stage["name"], int(stage["steps"])) for stage in stages])


def train_loss(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, training loss) of every logged step with a finite loss, the latest record per step."""
    latest = {
        r["step"]: float(r["loss"])
        for r in records
        if isinstance(r.get("loss"), int | float) and math.isfinite(r["loss"])
    }
    return sorted(latest.items())


def validation(records: list[dict[str, Any]], metric: str = "val_loss") -> dict[str, list[tuple[int, float]]]:
    """Per language, the (step, value) series of ``metric`` (``val_loss`` or ``val_bpb``) in step
    order, the latest record per step."""
    series: dict[str, dict[int, float]] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith(metric + "/") and value is not None:
                series.setdefault(key.removeprefix(metric + "/"), {})[record["step"]] = float(value)
    return {lang: sorted(points.items()) for lang, points in series.items()}


def draw_stages(ax: Any, loss: list[tuple[int, float]], bounds: list[tuple[str, int, int]]) -> None:
    """Training loss on ``ax`` with each stage shaded and named in the legend."""
    for i, (name, start, end) in enumerate(bounds):
        ax.axvspan(start, end, color=f"C{i % 10}", alpha=0.12, label=name)
    if loss:
        ax.plot(*zip(*loss, strict=True), color="black", linewidth=1)
    ax.set(title="training loss by stage", xlabel="step", ylabel="loss")
    ax.legend(fontsize=7)


def draw_validation(
    ax: Any,
    val: dict[str, list[tuple[int, float]]],
    bounds: list[tuple[str, int, int]],
    what: str = "loss",
    reference: dict[str, float] | None = None,
) -> None:
    """A validation series per language on ``ax`` (``what``: its name), with a line at each stage's
    end and, dashed, each language's ``reference`` value (the base model's, say)."""
    for _, _, end in bounds:
        ax.axvline(end, color="grey", linewidth=0.5)
    for i, (lang, points) in enumerate(val.items()):
        ax.plot(*zip(*points, strict=True), marker="o", label=lang, color=f"C{i % 10}")
        if reference and lang in reference:
            ax.axhline(reference[lang], color=f"C{i % 10}", linestyle="--", linewidth=1, label=f"{lang} base")
    ax.set(title=f"validation {what} per language", xlabel="step", ylabel=what)
    if val:
        ax.legend(fontsize=7)


def write_loss_png(
    run_dir: Path, bounds: list[tuple[str, int, int]] | None = None, out: Path | None = None
) -> Path:
    """Draw ``run_dir``'s curves into ``out`` (default ``run_dir/loss.png``), written atomically.

    ``bounds`` default to the run's ``stages.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir / "metrics.jsonl")
    bounds = bounds if bounds is not None else stage_bounds(run_dir / "stages.json")
    panels = [
        (what, series)
        for what, series in (("loss", validation(records)), ("bits per byte", validation(records, "val_bpb")))
        if series
    ]
    out = out or run_dir / "loss.png"
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(6 + 5.5 * len(panels), 4.5), squeeze=False)
    draw_stages(axes[0][0], train_loss(records), bounds)
    for ax, (what, series) in zip(axes[0][1:], panels):
        draw_validation(ax, series, bounds, what)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out
