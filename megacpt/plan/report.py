"""Text report of a plan: the configured layout, the meta-build proof, FLOPs, ranked alternatives."""

from __future__ import annotations

from megacpt.config.megatron import padded_vocab_size
from megacpt.config.schema import Config
from megacpt.plan import flops
from megacpt.plan.layouts import GIB, Candidate
from megacpt.plan.meta_build import ShapeCheck


def _gib(n: float) -> str:
    return f"{n / GIB:6.1f}"


def memory_lines(candidate: Candidate, usable_bytes: float) -> list[str]:
    """The per-GPU memory breakdown of one layout."""
    m = candidate.memory
    p = candidate.config.parallel
    optimizer = "distributed optimizer" if p.use_distributed_optimizer else "no distributed optimizer"
    return [
        f"  per-GPU memory (GiB; peak on the {m.stage} pipeline stage, {m.params:,} parameters):",
        f"    weights {_gib(m.weights)}   gradients {_gib(m.gradients)}   "
        f"optimizer {_gib(m.optimizer)} ({optimizer}; {_gib(m.optimizer_unsharded).strip()} unsharded)",
        f"    activations {_gib(m.activations)} (recompute: {p.recompute_granularity or 'none'}, "
        f"sequence parallel: {'on' if p.sequence_parallel and p.tensor_model_parallel_size > 1 else 'off'})",
        f"    total {_gib(m.total)} of {_gib(usable_bytes).strip()} usable -> "
        + ("fits" if candidate.fits else "DOES NOT FIT"),
    ]


def flops_lines(config: Config, world_size: int, step_seconds: float | None, target_mfu: float) -> list[str]:
    """FLOPs per step and per GPU, and what they mean in time and tokens."""
    per_step = flops.flops_per_step(config)
    tokens = config.training.global_batch_size * config.data.seq_length
    peak = flops.peak_flops(config)
    ideal_step = per_step / (world_size * peak * target_mfu)
    lines = [
        f"  model FLOPs per step {per_step:.3e} ({tokens:,} tokens), per GPU {per_step / world_size:.3e}",
        f"  at {target_mfu:.0%} MFU of an H100 ({peak / 1e12:.0f} TFLOP/s): step {ideal_step:.2f} s, "
        f"{flops.tokens_per_gpu_second(config, target_mfu):,.0f} tokens/s/GPU",
    ]
    if step_seconds is not None:
        lines.append(
            f"  at the measured {step_seconds:g} s/step: MFU {flops.mfu(config, world_size, step_seconds):.1%}"
        )
    return lines


def model_line(config: Config) -> str:
    m = config.model
    tp = config.parallel.tensor_model_parallel_size
    padded = padded_vocab_size(m.vocab_size, m.make_vocab_size_divisible_by, tp)
    return (
        f"model: {m.num_layers} layers, hidden {m.hidden_size}, {m.num_attention_heads} heads / "
        f"{m.groups} query groups, vocab {m.vocab_size:,} "
        f"(padded {padded:,} at TP{tp}), seq {config.data.seq_length}, "
        f"global batch {config.training.global_batch_size} x micro batch {config.training.micro_batch_size}"
    )


def ranking_table(ranked: list[Candidate], top: int) -> list[str]:
    """The best ``top`` layouts, one line each."""
    header = (
        f"  {'#':>3} {'layout':<24} {'mb/step':>7} {'bubble':>7} {'weights':>7} {'grads':>7} "
        f"{'optim':>7} {'activ':>7} {'total':>7}  fits"
    )
    lines = [header]
    for i, c in enumerate(ranked[:top], 1):
        m = c.memory
        lines.append(
            f"  {i:>3} {c.label:<24} {c.microbatches:>7} {c.bubble:>7.3f} {_gib(m.weights):>7} "
            f"{_gib(m.gradients):>7} {_gib(m.optimizer):>7} {_gib(m.activations):>7} {_gib(m.total):>7}  "
            + ("yes" if c.fits else "no")
        )
    return lines


def shape_lines(checks: list[ShapeCheck]) -> list[str]:
    """One line per pipeline rank built on the meta device."""
    return [
        f"  meta-device build of pipeline rank {c.pp_rank}: {c.built:,} parameters, "
        + ("matches the estimate" if c.ok else f"MISMATCH: estimated {c.estimated:,}")
        for c in checks
    ]
