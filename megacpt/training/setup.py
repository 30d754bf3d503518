"""Build what one stage trains with: model chunks with its freezing, Megatron DDP, optimizer, LR schedule, data.

Each stage is built afresh (and loads the previous stage's weights) because which parameters
train decides what Megatron DDP allocates gradient buffers for and what the optimizer holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
from megatron.core.optimizer import MegatronOptimizer, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megacpt.config import megatron as mapping
from megacpt.config.schema import Config, DatasetEntry, OptimizerConfig
from megacpt.data.mixture.build import GPTDatasets, build_gpt_datasets
from megacpt.data.mixture.spec import DataMixture
from megacpt.model.builder import build_model
from megacpt.model.lora import add_adapters
from megacpt.training.freezing import FreezePlan, apply_trainable
from megacpt.training.stages import Stage


@dataclass
class StageModel:
    """The trainable state of one stage on this rank."""

    models: list[DistributedDataParallel]
    optimizer: MegatronOptimizer
    scheduler: OptimizerParamScheduler
    freeze: FreezePlan


def build_stage_model(config: Config, stage: Stage) -> StageModel:
    """Model chunks (with a LoRA stage's adapters) and the stage's ``requires_grad`` set before DDP,
    then DDP, optimizer, schedule."""
    tf_config = mapping.transformer_config(config)
    chunks = build_model(config, tf_config)
    if stage.train.lora is not None:
        for chunk in chunks:
            add_adapters(chunk, stage.train.lora, seed=config.training.seed + stage.index)
    freeze = apply_trainable(
        chunks,
        stage.train,
        vocab_size=config.model.vocab_size,
        old_vocab_size=config.schedule.old_vocab_size,
        tied_embeddings=config.model.tie_embeddings,
    )
    ddp_config = mapping.ddp_config(config)
    models = [
        DistributedDataParallel(tf_config, ddp_config, chunk, disable_bucketing=i > 0)
        for i, chunk in enumerate(chunks)
    ]
    # Without this hook DP replicas silently drift apart: gradients are never all-reduced.
    tf_config.finalize_model_grads_func = finalize_model_grads
    no_sync = [m.no_sync for m in models]
    tf_config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync
    if config.parallel.overlap_grad_reduce:
        grad_sync = [m.start_grad_sync for m in models]
        tf_config.grad_sync_func = grad_sync[0] if len(grad_sync) == 1 else grad_sync
    if config.parallel.overlap_param_gather:
        param_sync = [m.start_param_sync for m in models]
        tf_config.param_sync_func = param_sync[0] if len(param_sync) == 1 else param_sync
    optimizer = get_megatron_optimizer(mapping.optimizer_config(config, stage.optimizer), models)
    scheduler = lr_schedule(optimizer, stage.optimizer, stage.steps)
    return StageModel(models=models, optimizer=optimizer, scheduler=scheduler, freeze=freeze)


def lr_schedule(optimizer: MegatronOptimizer, o: OptimizerConfig, steps: int) -> OptimizerParamScheduler:
    """Warmup then decay to ``min_lr`` over the stage; step k (1-based) runs at the schedule's value for k."""
    decay_steps = o.decay_steps or steps
    scheduler = OptimizerParamScheduler(
        optimizer,
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
    # Megatron-LM would run step 1 at the schedule's value for 0 (lr 0 with warmup).
    scheduler.step(increment=1)
    return scheduler


def mixture(datasets: tuple[DatasetEntry, ...] | list[DatasetEntry], mixture_file: str | None) -> DataMixture:
    if mixture_file:
        return DataMixture.from_yaml(mixture_file)
    return DataMixture.of(list(datasets))


def build_datasets(
    config: Config, data: DataMixture, *, seed: int, train_samples: int, valid_samples: int, cache_dir: str
) -> GPTDatasets:
    """Megatron-core blended GPT datasets for ``data`` at this run's sequence length and split."""
    d = config.data
    return build_gpt_datasets(
        data,
        seq_length=d.seq_length,
        seed=seed,
        split=d.split,
        train_samples=max(train_samples, config.training.global_batch_size),
        valid_samples=valid_samples,
        eod_id=d.eod_id,
        pad_id=d.pad_id,
        cache_dir=d.cache_dir or cache_dir,
    )


def release(stage_model: StageModel) -> None:
    """Drop a finished stage's model chunks and gradient buffers; its optimizer state goes with the
    last reference to ``stage_model``, which the caller drops."""
    stage_model.models.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
