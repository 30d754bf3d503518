"""The training loop: Megatron-core schedules, DDP, distributed optimizer, LR schedule, checkpoints.

``Trainer(config)`` sets up everything for this rank; ``train()`` runs to ``training.train_steps``;
``close()`` tears down. Resume is exact: the data position is a function of the step, and the
optimizer, scheduler and RNG states come back from the checkpoint. A non-finite loss skips the
optimizer step (counted); ``training.exit_on_nonfinite_steps`` of them in a row stop the run with
the last good checkpoint untouched.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
from megatron.core.optimizer import get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.pipeline_parallel import get_forward_backward_func

from megacpt.config import megatron as mapping
from megacpt.config.loader import dump_config
from megacpt.config.schema import Config
from megacpt.config.validate import validate_data
from megacpt.data.mixture import DataMixture, build_gpt_datasets
from megacpt.model.builder import build_model
from megacpt.parallel.runtime import init_runtime, shutdown
from megacpt.training import checkpoint as ckpt
from megacpt.training.batches import step_microbatches
from megacpt.training.loss import forward_step
from megacpt.training.metrics import MetricsLogger


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row."""


@dataclass
class TrainState:
    """Where the run is: the next step to run, and its history so far."""

    step: int = 0
    skipped_steps: int = 0
    losses: list[float] = field(default_factory=list)


def _mixture(config: Config) -> DataMixture:
    if config.data.mixture_file:
        return DataMixture.from_yaml(config.data.mixture_file)
    return DataMixture.from_list(
        [{"prefix": d.prefix, "weight": d.weight, "lang": d.lang} for d in config.data.datasets]
    )


class Trainer:
    """One training run on this rank."""

    def __init__(self, config: Config) -> None:
        self.config = config
        validate_data(config)
        self.runtime = init_runtime(config)
        self.run_dir = Path(config.logging.run_dir)
        self.ckpt_dir = Path(config.checkpoint.save_dir or self.run_dir / "checkpoints")
        self.is_reporting_rank = self.runtime.rank == self.runtime.world_size - 1
        if self.runtime.rank == 0:
            dump_config(config, self.run_dir / "config.yaml")
        self._build_model_and_optimizer()
        self._build_data()
        self.state = TrainState()
        self._nonfinite_in_a_row = 0
        self.metrics = MetricsLogger(self.run_dir, self.is_reporting_rank, config.logging.tensorboard)
        self._start_from_checkpoint()

    # -- setup -------------------------------------------------------------------------------
    def _build_model_and_optimizer(self) -> None:
        config = self.config
        tf_config = mapping.transformer_config(config)
        ddp_config = mapping.ddp_config(config)
        chunks = build_model(config, tf_config)
        self.models = [
            DistributedDataParallel(tf_config, ddp_config, chunk, disable_bucketing=i > 0)
            for i, chunk in enumerate(chunks)
        ]
        # Without this hook DP replicas silently drift apart: gradients are never all-reduced.
        tf_config.finalize_model_grads_func = finalize_model_grads
        no_sync = [m.no_sync for m in self.models]
        tf_config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync
        if config.parallel.overlap_grad_reduce:
            grad_sync = [m.start_grad_sync for m in self.models]
            tf_config.grad_sync_func = grad_sync[0] if len(grad_sync) == 1 else grad_sync
        if config.parallel.overlap_param_gather:
            param_sync = [m.start_param_sync for m in self.models]
            tf_config.param_sync_func = param_sync[0] if len(param_sync) == 1 else param_sync
        self.tf_config = tf_config
        self.optimizer = get_megatron_optimizer(mapping.optimizer_config(config), self.models)
        o, steps = config.optimizer, config.training.train_steps
        decay_steps = o.decay_steps or steps
        self.scheduler = OptimizerParamScheduler(
            self.optimizer,
            init_lr=0.0 if o.warmup_steps else o.lr,
            max_lr=o.lr,
            min_lr=o.min_lr,
            lr_warmup_steps=o.warmup_steps,
            lr_decay_steps=max(decay_steps, o.warmup_steps + 1),
            lr_decay_style=o.decay_style,
            start_wd=o.weight_decay,
            end_wd=o.weight_decay,
            wd_incr_steps=steps,
            wd_incr_style="constant",
            wsd_decay_steps=o.wsd_decay_steps,
            lr_wsd_decay_style=o.wsd_decay_style,
        )
        # Step k (1-based) runs at the schedule's value for k, so the first warmup step already
        # learns and the last step reaches min_lr (Megatron-LM would spend step 1 at lr 0).
        self.scheduler.step(increment=1)
        self.forward_backward = get_forward_backward_func()

    def _build_data(self) -> None:
        d, t = self.config.data, self.config.training
        evals = (t.train_steps // t.eval_interval + 1) if t.eval_interval else 0
        datasets = build_gpt_datasets(
            _mixture(self.config),
            seq_length=d.seq_length,
            seed=t.seed,
            split=d.split,
            train_samples=max(t.train_steps, 1) * t.global_batch_size,
            valid_samples=t.eval_steps * t.global_batch_size if evals else 0,
            eod_id=d.eod_id,
            pad_id=d.pad_id,
            cache_dir=d.cache_dir or str(self.run_dir / "data_cache"),
        )
        self.train_data = datasets.train
        self.valid_data = datasets.valid
        self.data_fingerprint = datasets.fingerprint

    def _start_from_checkpoint(self) -> None:
        c = self.config.checkpoint
        latest = ckpt.latest_checkpoint(self.ckpt_dir) if c.resume else None
        if latest is not None:
            meta = ckpt.load_checkpoint(latest, self.models, self.optimizer, self.scheduler)
            self.state = TrainState(step=meta["step"], skipped_steps=meta.get("skipped_steps", 0))
            self._log_rank0(f"resumed from {latest} at step {self.state.step}")
        elif c.pretrained:
            ckpt.load_pretrained(c.pretrained, self.models, self.config.model.vocab_size)
            self._log_rank0(f"initialised weights from {c.pretrained}")

    def _log_rank0(self, message: str) -> None:
        if self.runtime.rank == 0:
            print(f"[megacpt] {message}", flush=True)

    # -- steps -------------------------------------------------------------------------------
    def _run_schedule(self, dataset: Any, step: int, forward_only: bool) -> float:
        """Forward (and backward) one global batch; the mean loss, identical on every rank."""
        t = self.config.training
        dp_rank = parallel_state.get_data_parallel_rank()
        microbatches = step_microbatches(
            dataset,
            step=step,
            global_batch_size=t.global_batch_size,
            micro_batch_size=t.micro_batch_size,
            dp_rank=dp_rank,
            dp_size=self.runtime.data_parallel_size,
        )
        iterators = [iter(microbatches) for _ in self.models]
        losses = self.forward_backward(
            forward_step_func=partial(forward_step, vocab_size=self.config.model.vocab_size),
            data_iterator=iterators if len(iterators) > 1 else iterators[0],
            model=self.models if len(self.models) > 1 else self.models[0],
            num_microbatches=len(microbatches),
            seq_length=self.config.data.seq_length,
            micro_batch_size=t.micro_batch_size,
            forward_only=forward_only,
        )
        return self._reduce_loss(losses, len(microbatches))

    def _reduce_loss(self, losses: list[dict[str, torch.Tensor]], num_microbatches: int) -> float:
        value = torch.zeros(1, dtype=torch.float64, device=self.runtime.device)
        if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
            value[0] = sum(float(x["lm_loss"]) for x in losses) / num_microbatches
            dist.all_reduce(value, group=parallel_state.get_data_parallel_group())
            value /= self.runtime.data_parallel_size
        # Every rank learns the loss from the last pipeline stage (it decides whether to step).
        last = parallel_state.get_pipeline_model_parallel_last_rank()
        dist.broadcast(value, src=last, group=parallel_state.get_pipeline_model_parallel_group())
        return float(value[0])

    def train_step(self) -> dict[str, Any]:
        """Run one step; returns its metrics."""
        start = time.perf_counter()
        for model in self.models:
            model.zero_grad_buffer()
        self.optimizer.zero_grad()
        loss = self._run_schedule(self.train_data, self.state.step, forward_only=False)
        grad_norm: float | None = None
        lr = self.optimizer.param_groups[0]["lr"]
        if math.isfinite(loss):
            _, norm, _ = self.optimizer.step()
            grad_norm = float(norm) if norm is not None else None
            self.scheduler.step(increment=1)
            self._nonfinite_in_a_row = 0
        else:
            self.state.skipped_steps += 1
            self._nonfinite_in_a_row += 1
        elapsed = time.perf_counter() - start
        t = self.config.training
        tokens = t.global_batch_size * self.config.data.seq_length
        return {
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": tokens / elapsed,
            "step_time_s": elapsed,
            "skipped_steps": self.state.skipped_steps,
        }

    def evaluate(self) -> dict[str, float]:
        """Mean validation loss per language over ``training.eval_steps`` batches."""
        for model in self.models:
            model.eval()
        results = {}
        with torch.no_grad():
            for lang, dataset in self.valid_data.items():
                losses = [
                    self._run_schedule(dataset, i, forward_only=True)
                    for i in range(self.config.training.eval_steps)
                ]
                results[f"val_loss/{lang}"] = sum(losses) / len(losses)
        for model in self.models:
            model.train()
        return results

    def save(self) -> Path:
        meta = {
            "vocab_size": self.config.model.vocab_size,
            "skipped_steps": self.state.skipped_steps,
            "data_fingerprint": self.data_fingerprint,
        }
        return ckpt.save_checkpoint(
            self.ckpt_dir,
            self.state.step,
            self.models,
            self.optimizer,
            self.scheduler,
            meta,
            self.config.checkpoint.keep_last,
        )

    def train(self) -> TrainState:
        """Train until ``training.train_steps``; checkpoints at the configured interval and at the end."""
        t, c = self.config.training, self.config.checkpoint
        for model in self.models:
            model.train()
        while self.state.step < t.train_steps:
            metrics = self.train_step()
            self.state.step += 1
            self.state.losses.append(metrics["loss"])
            if self.state.step % t.log_interval == 0 or self.state.step == t.train_steps:
                self.metrics.log(self.state.step, metrics)
            if self._nonfinite_in_a_row >= t.exit_on_nonfinite_steps:
                raise NonFiniteLossError(
                    f"{self._nonfinite_in_a_row} non-finite losses in a row at step {self.state.step}; "
                    f"stopping with the last checkpoint in {self.ckpt_dir} intact"
                )
            if t.eval_interval and self.valid_data and self.state.step % t.eval_interval == 0:
                self.metrics.log(self.state.step, self.evaluate())
            if c.save_interval and self.state.step % c.save_interval == 0:
                self.save()
        if c.save_at_end and ckpt.latest_checkpoint(self.ckpt_dir) != self.ckpt_dir / ckpt.checkpoint_name(
            self.state.step
        ):
            self.save()
        return self.state

    def close(self) -> None:
        self.metrics.close()
        shutdown()
