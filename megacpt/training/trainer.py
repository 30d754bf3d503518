"""The training loop: stages of Megatron-core training with freezing, checkpoints and exact resume.

``Trainer(config)`` resolves the stage schedule, starts the runtime and finds where to begin (the
latest checkpoint of this run, else ``checkpoint.pretrained``, else random weights); ``train()``
runs the remaining stages; ``close()`` tears down. Each stage is built afresh from the previous
stage's end checkpoint with its own freezing, optimizer and LR schedule, and draws its samples with
seed ``training.seed + stage index``. Resume is exact anywhere: the data position is a function of
(stage, step in stage), and model, optimizer, schedule and RNG come back from the checkpoint.
A non-finite loss skips the optimizer step (counted); ``training.exit_on_nonfinite_steps`` of them
in a row stop the run with the last good checkpoint untouched. A preemption signal saves at the next
step boundary and raises ``PreemptedError`` (see ``preemption``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from megatron.core.pipeline_parallel import get_forward_backward_func

from megacpt.checkpoint import state as ckpt
from megacpt.checkpoint.meta import HF_SUBDIR, latest_checkpoint, read_meta, resolve, resume_checkpoint
from megacpt.config.loader import dump_config, to_dict
from megacpt.config.schema import Config
from megacpt.config.validate import check_model_matches, validate_checkpoints, validate_data
from megacpt.errors import UserError
from megacpt.model.lora import merge_adapters
from megacpt.parallel.runtime import agree_on_job, init_runtime, shutdown
from megacpt.plan.flops import device_peak_flops, flops_per_step
from megacpt.training.batches import step_microbatches
from megacpt.training.checkpointer import Checkpointer
from megacpt.training.curves import bounds_of, write_loss_png
from megacpt.training.loss import forward_step
from megacpt.training.metrics import MetricsLogger
from megacpt.training.preemption import PreemptedError, PreemptionWatch
from megacpt.training.setup import StageModel, build_datasets, build_stage_model, mixture, release
from megacpt.training.stages import Stage, budget_note, resolve_stages
from megacpt.training.validation import Validator, build_validation_sets, validates


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row."""


@dataclass
class TrainState:
    """Where the run is: global step, stage, step within the stage, and the losses so far."""

    step: int = 0
    stage: int = 0
    stage_step: int = 0
    skipped_steps: int = 0
    losses: list[float] = field(default_factory=list)


class Trainer:
    """One training run on this rank."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stages = resolve_stages(config)
        self.run_dir = Path(config.logging.run_dir)
        self.ckpt_dir = Path(config.checkpoint.save_dir or self.run_dir / "checkpoints")
        # Everything that can refuse the run is checked before anything is written.
        validate_data(config)
        validate_checkpoints(config)
        self.resume_from, self.resume_note = (
            resume_checkpoint(self.ckpt_dir) if config.checkpoint.resume else (None, None)
        )
        if self.resume_from is not None:
            check_resumable(config, read_meta(self.resume_from), self.resume_from)
        self.runtime = init_runtime(config)
        try:
            agree_on_job(config, self.resume_from)
        except UserError:
            shutdown(wait_for_others=False)
            raise
        self.preemption = PreemptionWatch(config.checkpoint.preempt_signals, self.runtime.device)
        self.checkpointer = Checkpointer(config.checkpoint, self.ckpt_dir, self.preemption)
        self.is_reporting_rank = self.runtime.rank == self.runtime.world_size - 1
        if self.runtime.rank == 0:
            dump_config(config, self.run_dir / "config.yaml")
            (self.run_dir / "stages.json").write_text(
                json.dumps([_describe(s) for s in self.stages], indent=2)
            )
        self.metrics = MetricsLogger(self.run_dir, self.is_reporting_rank, config.logging.tensorboard)
        self.step_flops = flops_per_step(config)
        device = (
            torch.cuda.get_device_name(self.runtime.device) if self.runtime.device.type == "cuda" else None
        )
        self.peak_flops = device_peak_flops(config, device)
        self.forward_backward = get_forward_backward_func()
        self.state = TrainState()
        self._nonfinite_in_a_row = 0
        self._build_validation_data()
        self._start()

    # -- setup -------------------------------------------------------------------------------
    def _build_validation_data(self) -> None:
        sets = build_validation_sets(self.config) if validates(self.config) else {}
        self.validator = Validator(self.config, sets, self.runtime)
        if sets:
            self._log_rank0(self.validator.describe())

    def _start(self) -> None:
        """Resume this run if it has a checkpoint, else begin the first stage."""
        c = self.config.checkpoint
        latest = self.resume_from
        if self.resume_note:
            self._log_rank0(self.resume_note)
        if note := budget_note(self.stages, self.config):
            self._log_rank0(note)
        if latest is None:
            self._enter_stage(0, init_from=Path(c.pretrained) if c.pretrained else None)
            return
        meta = read_meta(latest)
        self.metrics.drop_after(meta["step"])
        stage, stage_step = meta.get("stage", 0), meta.get("stage_step", meta["step"])
        self.state = TrainState(
            step=meta["step"], stage=stage, stage_step=stage_step, skipped_steps=meta.get("skipped_steps", 0)
        )
        finished = stage_step >= self.stages[stage].steps and not meta.get("lora")  # adapters merged
        if finished and stage + 1 < len(self.stages):
            self.state.stage, self.state.stage_step = stage + 1, 0
            self._enter_stage(stage + 1, init_from=latest)
        elif meta.get("weights_only"):  # the end of a LoRA stage that ends the run: nothing left to train
            self._enter_stage(stage, init_from=latest)
        else:
            self._enter_stage(stage, resume_from=latest)
        self._log_rank0(f"resumed from {latest} at step {self.state.step} (stage {self.stages[stage].name})")

    def _enter_stage(
        self, index: int, *, init_from: Path | None = None, resume_from: Path | None = None
    ) -> None:
        """Build stage ``index`` and load its starting weights (and, when resuming, everything else)."""
        stage = self.stages[index]
        self.stage = stage
        self.current: StageModel = build_stage_model(self.config, stage)
        cur = self.current
        t = self.config.training
        train = build_datasets(
            self.config,
            mixture(stage.datasets, stage.mixture_file),
            seed=t.seed + index,
            train_samples=stage.steps * t.global_batch_size,
            valid_samples=0,
            cache_dir=str(self.run_dir / "data_cache"),
        )
        self.train_data, self.data_fingerprint = train.train, train.fingerprint
        source = resume_from or init_from
        side_files = resolve(source) / HF_SUBDIR if source is not None else None
        if side_files is not None and not side_files.is_dir():
            side_files = None
        if resume_from is not None:
            meta = ckpt.load_checkpoint(resume_from, cur.models, cur.optimizer, cur.scheduler)
            self.checkpointer.inherit(meta, side_files)
        elif init_from is not None:
            keep_optimizer = not stage.reset_optimizer and index > 0
            meta = ckpt.load_pretrained(init_from, cur.models, self.config.model.vocab_size)
            self.checkpointer.inherit(meta, side_files)
            if keep_optimizer:
                ckpt.load_optimizer_state(init_from, cur.models, cur.optimizer)
            cur.optimizer.reload_model_params()  # main (fp32) copies from the loaded weights
            self._log_rank0(f"stage {stage.name}: weights from {init_from}")
        cur.freeze.snapshot()
        counts = self._parameter_counts()
        self._log_rank0(
            f"stage {index + 1}/{len(self.stages)} '{stage.name}': {stage.steps} steps, "
            f"{counts['trainable_params']:,} trainable / {counts['frozen_params']:,} frozen parameters"
        )
        self.metrics.log(self.state.step, {"stage": stage.name, **counts})

    def _parameter_counts(self) -> dict[str, int]:
        """Trainable and frozen parameters of the whole model (each TP/PP shard counted once)."""
        local = torch.tensor(
            [self.current.freeze.trainable_numel, self.current.freeze.frozen_numel], dtype=torch.int64
        )
        if self.runtime.data_parallel_rank != 0:
            local.zero_()
        dist.all_reduce(local)
        return {"trainable_params": int(local[0]), "frozen_params": int(local[1])}

    def _log_rank0(self, message: str) -> None:
        if self.runtime.rank == 0:
            print(f"[megacpt] {message}", flush=True)

    # -- steps -------------------------------------------------------------------------------
    def _run_schedule(self, dataset: Any, step: int, forward_only: bool) -> float:
        """Forward (and backward) one global batch; the mean loss, identical on every rank."""
        t = self.config.training
        models = self.current.models
        microbatches = step_microbatches(
            dataset,
            step=step,
            global_batch_size=t.global_batch_size,
            micro_batch_size=t.micro_batch_size,
            dp_rank=self.runtime.data_parallel_rank,
            dp_size=self.runtime.data_parallel_size,
        )
        iterators = [iter(microbatches) for _ in models]
        losses = self.forward_backward(
            forward_step_func=functools.partial(forward_step, cp_group=self.runtime.groups.cp),
            data_iterator=iterators if len(iterators) > 1 else iterators[0],
            model=models if len(models) > 1 else models[0],
            num_microbatches=len(microbatches),
            seq_length=self.config.data.seq_length,
            micro_batch_size=t.micro_batch_size,
            forward_only=forward_only,
        )
        return self._reduce_loss(losses, len(microbatches))

    def _reduce_loss(self, losses: list[dict[str, torch.Tensor]], num_microbatches: int) -> float:
        rt = self.runtime
        value = torch.zeros(1, dtype=torch.float64, device=rt.device)
        if rt.is_last_pipeline_stage:
            value[0] = sum(float(x["lm_loss"]) for x in losses) / num_microbatches
            dist.all_reduce(value, group=rt.groups.dp)
            value /= rt.data_parallel_size
        # Every rank learns the loss from the last pipeline stage (it decides whether to step).
        dist.broadcast(value, src=rt.last_pipeline_rank, group=rt.groups.pp)
        return float(value[0])

    def train_step(self) -> dict[str, Any]:
        """Run one step of the current stage; returns its metrics."""
        start = time.perf_counter()
        cur = self.current
        for model in cur.models:
            model.zero_grad_buffer()
        cur.optimizer.zero_grad()
        loss = self._run_schedule(self.train_data, self.state.stage_step, forward_only=False)
        grad_norm: float | None = None
        lr = cur.optimizer.param_groups[0]["lr"]
        if math.isfinite(loss):
            cur.freeze.mask_gradients()
            _, norm, _ = cur.optimizer.step()
            cur.freeze.restore(cur.optimizer)
            grad_norm = float(norm) if norm is not None else None
            cur.scheduler.step(increment=1)
            self._nonfinite_in_a_row = 0
        else:
            self.state.skipped_steps += 1
            self._nonfinite_in_a_row += 1
        elapsed = time.perf_counter() - start
        tokens = self.config.training.global_batch_size * self.config.data.seq_length
        flops_per_device = self.step_flops / self.runtime.world_size / elapsed
        metrics = {
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": tokens / elapsed,
            "tflops_per_device": flops_per_device / 1e12,
            "step_time_s": elapsed,
            "skipped_steps": self.state.skipped_steps,
        }
        if self.peak_flops:
            metrics["mfu"] = flops_per_device / self.peak_flops
        if self.runtime.device.type == "cuda":  # the peak so far, to hold against `megacpt plan`
            metrics["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(self.runtime.device) / 2**30
        return metrics

    def _validate(self) -> None:
        self.metrics.log(self.state.step, self.evaluate())

    def evaluate(self) -> dict[str, float]:
        """Validation loss and bits per byte per language (``megacpt.training.validation``)."""
        return self.validator.run(self.current.models, self.forward_backward, self.state.step)

    @contextlib.contextmanager
    def _gathered_parameters(self) -> Iterator[None]:
        """Every rank's parameters as the last optimizer step left them. With the distributed
        optimizer and ``overlap_param_gather`` the all-gather of updated shards waits for the next
        forward; a save (or a merge) before it would read the previous step's values, as
        Megatron-LM's save also forces the gather first."""
        models = [m for m in self.current.models if m.use_forward_hook]
        for model in models:
            model.disable_forward_pre_hook(param_sync=True)
        try:
            yield
        finally:
            for model in models:
                model.enable_forward_pre_hook()

    def save(self, merged: bool = False) -> Path:
        """Checkpoint this step. In a LoRA stage the adapters are saved unmerged (an exact resume
        point); ``merged``: they have been folded into the weights (the stage's end)."""
        lora = self.stage.train.lora
        meta = {
            "model": to_dict(self.config)["model"],
            "vocab_size": self.config.model.vocab_size,
            "skipped_steps": self.state.skipped_steps,
            "data_fingerprint": self.data_fingerprint,
            "stage": self.state.stage,
            "stage_name": self.stage.name,
            "stage_step": self.state.stage_step,
            "distributed_optimizer": self.config.parallel.use_distributed_optimizer,
        }
        if lora is not None and not merged:
            meta["lora"] = dataclasses.asdict(lora)
        with self._gathered_parameters():
            return self.checkpointer.save(self.state.step, self.current, meta, weights_only=merged)

    def train(self) -> TrainState:
        """Run the remaining stages; checkpoints at the configured interval and at every stage end."""
        t = self.config.training
        if self.validator.due(self.state.step, at_start=True):
            self._validate()
        while True:
            for model in self.current.models:
                model.train()
            while self.state.stage_step < self.stage.steps:
                metrics = self.train_step()
                self.state.step += 1
                self.state.stage_step += 1
                self.state.losses.append(metrics["loss"])
                if self.state.stage_step % t.log_interval == 0 or self.state.stage_step == self.stage.steps:
                    self.metrics.log(self.state.step, {**metrics, "stage": self.stage.name})
                if self._nonfinite_in_a_row >= t.exit_on_nonfinite_steps:
                    raise NonFiniteLossError(
                        f"{self._nonfinite_in_a_row} non-finite losses in a row at step {self.state.step}; "
                        f"stopping with the last checkpoint in {self.ckpt_dir} intact"
                    )
                if self.validator.due(self.state.step):
                    self._validate()
                # A LoRA stage's last step is saved once, merged, at the stage's end below.
                saved = self.checkpointer.due(self.state.step) and not (
                    self.stage.train.lora is not None and self.state.stage_step == self.stage.steps
                )
                if saved:
                    self.save()
                preempted_by = self.preemption.agreed()
                if preempted_by is not None:
                    if not saved:
                        self.save()
                    raise PreemptedError(preempted_by.name, self.state.step)
            last_stage = self.state.stage + 1 == len(self.stages)
            if self.stage.train.lora is not None:
                self._merge_adapters(last_stage)
            elif self.checkpointer.due_at_stage_end(self.state.step, last_stage):
                self.save()
            if not last_stage and self.validator.due(self.state.step, at_stage_end=True):
                self._validate()
            if last_stage:
                if self.validator.due(self.state.step, at_end=True):
                    self._validate()
                if self.is_reporting_rank:
                    write_loss_png(self.run_dir, bounds_of([(s.name, s.steps) for s in self.stages]))
                return self.state
            release(self.current)
            del self.current  # the optimizer state goes before the next stage allocates its own
            self.state.stage, self.state.stage_step = self.state.stage + 1, 0
            self._enter_stage(self.state.stage, init_from=self.checkpointer.path(self.state.step))

    def _merge_adapters(self, last_stage: bool) -> None:
        """Fold the LoRA stage's adapters into the weights and save them plain, replacing an
        unmerged checkpoint of the same step (one saved by a preemption signal). Saved also at the
        run's end without ``save_at_end`` when the interval falls on it: the unmerged checkpoint
        the interval would have written is of no use past the stage."""
        step = self.state.step
        done = self.checkpointer.path(step)
        if latest_checkpoint(self.ckpt_dir) == done and read_meta(done).get("weights_only"):
            return  # a resumed run whose LoRA stage had already ended and been merged
        with self._gathered_parameters():
            for model in self.current.models:
                merge_adapters(model.module)
        if self.config.checkpoint.save_at_end or not last_stage or self.checkpointer.due(step):
            self.save(merged=True)
        self._log_rank0(f"stage {self.stage.name}: LoRA adapters merged into the weights")

    def close(self, wait_for_others: bool = True) -> None:
        self.preemption.close()
        self.metrics.close()
        shutdown(wait_for_others)


def check_resumable(config: Config, meta: dict[str, Any], path: Path) -> None:
    """The checkpoint a run resumes must have its model and optimizer type (``UserError`` otherwise)."""
    check_model_matches(config, meta, f"the checkpoint to resume, {path},")
    saved = None if meta.get("weights_only") else meta.get("distributed_optimizer")
    wanted = config.parallel.use_distributed_optimizer
    if saved is not None and saved != wanted:
        kind = {True: "the distributed optimizer", False: "the plain optimizer"}
        raise UserError(
            f"{path} holds {kind[saved]}'s state but parallel.use_distributed_optimizer is {str(wanted).lower()}: "
            f"keep use_distributed_optimizer={str(saved).lower()} to resume, or start a new run from its weights "
            f"with checkpoint.pretrained={path} checkpoint.resume=false"
        )


def _describe(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "steps": stage.steps,
        "train": dataclasses.asdict(stage.train),
        "lr": stage.optimizer.lr,
        "reset_optimizer": stage.reset_optimizer,
    }
