"""What a run reports: one line per logged step on stdout, ``metrics.jsonl`` and TensorBoard.

Only the reporting rank (the last one, which holds the last pipeline stage's loss) writes. Each
JSONL line is one object with at least ``step``, ``loss``, ``lr``, ``grad_norm``, ``tokens_per_s``
and ``tflops_per_device`` (model FLOPs by PaLM's convention, ``megacpt.plan.flops``: the whole
model's, also in stages that freeze part of it, so a frozen stage's figure is comparable in tokens
but overstates the work done), plus ``mfu`` when the device's peak is known; validation lines carry
``val_loss/<lang>``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from megacpt.atomic import write_atomic


class MetricsLogger:
    """Append-only metrics sink for one run directory."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Record ``values`` at ``step`` everywhere; floats that are not finite are written as null."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step}
        for key, value in values.items():
            record[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)
        print(_format(record), flush=True)

    def drop_after(self, step: int) -> None:
        """Forget the records of steps after ``step`` (a run resumed from its checkpoint at ``step``
        logs them again), so that readers see each step once."""
        if not self.enabled or self._jsonl is None:
            return
        path = Path(self._jsonl.name)
        self._jsonl.close()
        kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _step_of(line) <= step]
        write_atomic(path, "".join(line + "\n" for line in kept))
        self._jsonl = path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _step_of(line: str) -> float:
    """The step a metrics line records; a line cut short by a kill counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _format(record: dict[str, Any]) -> str:
    parts = [f"step {record['step']:>6}"]
    for key, value in record.items():
        if key == "step":
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}" if abs(value) < 1e5 else f"{key} {value:.3e}")
        else:
            parts.append(f"{key} {value}")
    return " | ".join(parts)
