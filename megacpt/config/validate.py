"""Checks that a config can run on a given world size, before any process group starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from megacpt.config.schema import Config
from megacpt.errors import UserError


def transformer_engine_available() -> bool:
    """True when Transformer Engine's PyTorch package can be imported."""
    return importlib.util.find_spec("transformer_engine") is not None


def data_parallel_size(config: Config, world_size: int) -> int:
    """The data-parallel size implied by the layout and the world size."""
    p = config.parallel
    model_parallel = p.tensor_model_parallel_size * p.pipeline_model_parallel_size * p.context_parallel_size
    if model_parallel < 1 or world_size % model_parallel:
        raise UserError(
            f"world size {world_size} is not divisible by TP x PP x CP = "
            f"{p.tensor_model_parallel_size} x {p.pipeline_model_parallel_size} x {p.context_parallel_size}"
        )
    return world_size // model_parallel


def validate_layout(config: Config, world_size: int, *, this_machine: bool = True) -> None:
    """Raise ``UserError`` for a layout that cannot work: heads, groups, layers, batch, sequence.

    ``this_machine=False`` (a dry run for another machine) skips what depends on what is installed here.
    """
    m, p, t = config.model, config.parallel, config.training
    tp, pp, vp = (
        p.tensor_model_parallel_size,
        p.pipeline_model_parallel_size,
        p.virtual_pipeline_model_parallel_size,
    )
    for name, value in (
        ("tensor_model_parallel_size", tp),
        ("pipeline_model_parallel_size", pp),
        ("context_parallel_size", p.context_parallel_size),
    ):
        if value < 1:
            raise UserError(f"parallel.{name} must be at least 1, got {value}")
    groups = m.num_query_groups or m.num_attention_heads
    if m.num_attention_heads % groups:
        raise UserError(
            f"num_attention_heads {m.num_attention_heads} is not divisible by num_query_groups {groups}"
        )
    if m.num_attention_heads % tp:
        raise UserError(
            f"tensor_model_parallel_size {tp} does not divide num_attention_heads {m.num_attention_heads}"
        )
    if groups % tp:
        raise UserError(f"tensor_model_parallel_size {tp} does not divide num_query_groups {groups}")
    if m.kv_channels is None and m.hidden_size % m.num_attention_heads:
        raise UserError(
            f"hidden_size {m.hidden_size} is not divisible by num_attention_heads {m.num_attention_heads}"
        )
    ffn = m.ffn_hidden_size or 4 * m.hidden_size
    if ffn % tp:
        raise UserError(f"tensor_model_parallel_size {tp} does not divide ffn_hidden_size {ffn}")
    stages = pp * (vp or 1)
    if m.num_layers % stages:
        raise UserError(f"num_layers {m.num_layers} is not divisible by PP x VP = {pp} x {vp or 1}")
    if vp is not None and (vp < 1 or pp < 3):
        # With two stages, each rank's previous and next stage are the same peer, and the interleaved
        # schedule's forward activations and backward gradients (same shape) are matched out of order:
        # the losses are silently wrong (seen on gloo; Megatron-LM also asks for PP > 2).
        raise UserError("virtual_pipeline_model_parallel_size needs pipeline_model_parallel_size >= 3")
    if m.vocab_size < 1:
        raise UserError(f"model.vocab_size must be positive, got {m.vocab_size}")
    dp = data_parallel_size(config, world_size)
    if t.micro_batch_size < 1 or t.global_batch_size % (t.micro_batch_size * dp):
        raise UserError(
            f"global_batch_size {t.global_batch_size} is not divisible by micro_batch_size x DP = "
            f"{t.micro_batch_size} x {dp}"
        )
    seq = config.data.seq_length
    if p.sequence_parallel and tp > 1 and seq % tp:
        raise UserError(f"sequence_parallel needs seq_length {seq} divisible by TP {tp}")
    if p.context_parallel_size > 1 and seq % (2 * p.context_parallel_size):
        raise UserError(
            f"seq_length {seq} is not divisible by 2 x context_parallel_size {p.context_parallel_size}"
        )
    if seq > m.max_position_embeddings:
        raise UserError(f"seq_length {seq} exceeds max_position_embeddings {m.max_position_embeddings}")
    if p.overlap_param_gather and not p.use_distributed_optimizer:
        raise UserError("overlap_param_gather needs use_distributed_optimizer")
    if this_machine and p.context_parallel_size > 1 and not transformer_engine_available():
        raise UserError(
            "context_parallel_size > 1 needs Transformer Engine's attention, which is not installed"
        )
    if this_machine and config.precision.fp8 and not transformer_engine_available():
        raise UserError(
            "precision.fp8 needs Transformer Engine, which is not installed (pip install megacpt[gpu])"
        )
    if config.precision.fp8 and m.transformer_impl == "local":
        raise UserError("precision.fp8 needs model.transformer_impl 'transformer_engine' or 'auto'")


def validate_data(config: Config) -> None:
    """Raise ``UserError`` for a dataset whose ``.bin``/``.idx`` files are missing."""
    if not config.data.datasets and not config.data.mixture_file:
        raise UserError("no training data: set data.datasets or data.mixture_file")
    if config.data.mixture_file and not Path(config.data.mixture_file).is_file():
        raise UserError(f"data mixture file not found: {config.data.mixture_file}")
    for entry in config.data.datasets:
        for suffix in (".bin", ".idx"):
            if not Path(entry.prefix + suffix).is_file():
                raise UserError(
                    f"missing data file {entry.prefix + suffix} (data.datasets prefix '{entry.prefix}')"
                )
        if entry.weight <= 0:
            raise UserError(f"dataset '{entry.prefix}': weight must be positive, got {entry.weight}")


def validate(config: Config, world_size: int) -> None:
    """All checks a run needs before it starts."""
    validate_layout(config, world_size)
    validate_data(config)
