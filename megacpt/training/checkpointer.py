"""When the trainer saves, and what travels with every checkpoint.

The trainer asks ``due`` / ``due_at_stage_end`` and then calls ``save``, as it asks the validator
whether to validate; torchtitan's ``CheckpointManager.save(step)`` instead decides inside whether
a step is due. Here the loop keeps the decision visible, so a save and a validation at the same
step are ordered in one place (``Trainer.train``). How a checkpoint is written is
``megacpt.checkpoint.state``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megacpt.checkpoint import state as ckpt
from megacpt.checkpoint.meta import checkpoint_name, latest_checkpoint
from megacpt.config.schema import CheckpointConfig
from megacpt.training.preemption import PreemptionWatch
from megacpt.training.setup import StageModel

# Checkpoint metadata that travels from the pretrained checkpoint into every checkpoint of the run
# (the original HF config and tokenizer, which the Megatron -> HF export needs).
LINEAGE = ("hf", "tokenizer")


class Checkpointer:
    """Saves this run's checkpoints under ``directory`` at ``config``'s interval and stage ends."""

    def __init__(self, config: CheckpointConfig, directory: Path, preemption: PreemptionWatch) -> None:
        self.config = config
        self.directory = directory
        self.preemption = preemption
        self.side_files: Path | None = None  # hf/ of the checkpoint the run started from
        self.lineage: dict[str, Any] = {}  # what the first pretrained checkpoint says of its origin

    def inherit(self, meta: dict[str, Any], side_files: Path | None) -> None:
        """Carry the origin of the checkpoint a stage started from into the checkpoints it writes."""
        self.lineage = {k: meta[k] for k in LINEAGE if k in meta}
        if side_files is not None:
            self.side_files = side_files

    def due(self, step: int) -> bool:
        """Whether ``save_interval`` falls on ``step``."""
        interval = self.config.save_interval
        return interval is not None and interval > 0 and step % interval == 0

    def due_at_stage_end(self, step: int, last_stage: bool) -> bool:
        """Every stage ends with a checkpoint (the next one starts from it), the run's last one with
        ``save_at_end``; never twice for one step."""
        wanted = self.config.save_at_end or not last_stage
        return wanted and latest_checkpoint(self.directory) != self.path(step)

    def path(self, step: int) -> Path:
        return self.directory / checkpoint_name(step)

    def save(self, step: int, stage: StageModel, meta: dict[str, Any], weights_only: bool = False) -> Path:
        """Write ``iter_<step>`` (a preemption signal waits until it is complete)."""
        with self.preemption.deferred():
            return ckpt.save_checkpoint(
                self.directory,
                step,
                stage.models,
                stage.optimizer,
                stage.scheduler,
                {**self.lineage, **meta},
                self.config.keep_last,
                self.side_files,
                weights_only,
            )
