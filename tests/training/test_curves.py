"""A run's curves: the latest record wins for a step logged twice, and ``loss.png`` is drawn whole."""

from __future__ import annotations

import json

import pytest

from megacpt.errors import UserError
from megacpt.training.curves import read_metrics, train_loss, validation, write_loss_png


def test_rerun_steps_keep_their_latest_record_and_the_png_is_written(tmp_path):
    records = [
        {"step": 0, "val_loss/ko": 5.0},
        {"step": 1, "loss": 4.0, "stage": "a"},
        {"step": 2, "loss": 3.5, "stage": "a"},  # killed after step 2 without a checkpoint at 2 ...
        {"step": 2, "loss": 3.4, "stage": "a"},  # ... and step 2 run again after the resume
        {"step": 3, "loss": None, "stage": "b"},  # a skipped non-finite step
        {"step": 4, "loss": 3.0, "stage": "b", "val_loss/ko": 4.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "stages.json").write_text(json.dumps([{"name": "a", "steps": 2}, {"name": "b", "steps": 2}]))
    loaded = read_metrics(tmp_path / "metrics.jsonl")
    assert train_loss(loaded) == [(1, 4.0), (2, 3.4), (4, 3.0)]
    assert validation(loaded) == {"ko": [(0, 5.0), (4, 4.0)]}
    png = write_loss_png(tmp_path)
    assert png == tmp_path / "loss.png" and png.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_run_without_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        write_loss_png(tmp_path)
