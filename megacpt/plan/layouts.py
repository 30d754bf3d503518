"""Enumerate the TP/PP/VP/CP/DP layouts that can run a config on a cluster, and rank them.

A candidate keeps the config's micro-batch size, recompute and optimizer settings and changes
only the split: TP and CP within a node (TP x CP divides the GPUs per node: both communicate at
every layer), PP a divisor of the layers,
virtual stages only with PP >= 3, CP over the sequence, DP what is left. Sequence parallelism is
on whenever TP > 1 (it only saves memory). Every candidate passes ``validate_layout``, the same
check a run makes before starting. FP8 is planned for the cluster, so Transformer Engine's
absence on this machine does not reject a candidate.

Ranking is deliberately simple and explainable, not a performance model: layouts that fit come
first, then the smallest pipeline bubble ``(PP - 1) / (VP x microbatches)``, then the least
tensor/context-parallel communication (TP x CP), then the least memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from megacpt.config.schema import Config
from megacpt.config.validate import data_parallel_size, validate_layout
from megacpt.errors import UserError
from megacpt.plan.memory import MemoryEstimate, estimate_memory

GIB = 2**30


@dataclass(frozen=True)
class Candidate:
    """One layout of a config on ``world_size`` GPUs, with its estimate."""

    config: Config
    world_size: int
    memory: MemoryEstimate
    fits: bool

    @property
    def label(self) -> str:
        p = self.config.parallel
        vp = p.virtual_pipeline_model_parallel_size
        dp = data_parallel_size(self.config, self.world_size)
        return (
            f"TP{p.tensor_model_parallel_size} PP{p.pipeline_model_parallel_size}"
            f"{f' VP{vp}' if vp else ''} CP{p.context_parallel_size} DP{dp}"
        )

    @property
    def microbatches(self) -> int:
        t = self.config.training
        return t.global_batch_size // (t.micro_batch_size * data_parallel_size(self.config, self.world_size))

    @property
    def bubble(self) -> float:
        """Idle fraction of a pipeline step relative to its work, ``(PP - 1) / (VP x m)``."""
        p = self.config.parallel
        return (p.pipeline_model_parallel_size - 1) / (
            (p.virtual_pipeline_model_parallel_size or 1) * self.microbatches
        )


def check_layout(config: Config, world_size: int) -> None:
    """``validate_layout`` for the cluster: what is installed on this machine is not checked."""
    validate_layout(config, world_size, this_machine=False)


def with_layout(config: Config, tp: int, pp: int, vp: int | None, cp: int) -> Config:
    """``config`` split another way (sequence parallel on whenever TP > 1)."""
    parallel = dataclasses.replace(
        config.parallel,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vp,
        context_parallel_size=cp,
        sequence_parallel=tp > 1,
    )
    return dataclasses.replace(config, parallel=parallel)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def evaluate(config: Config, world_size: int, usable_bytes: float) -> Candidate:
    """The estimate of one (already valid) layout and whether it fits in ``usable_bytes``."""
    memory = estimate_memory(config, world_size)
    return Candidate(config, world_size, memory, memory.total <= usable_bytes)


def candidates(config: Config, world_size: int, gpus_per_node: int, usable_bytes: float) -> list[Candidate]:
    """Every valid layout of ``config`` on ``world_size`` GPUs, best first."""
    found = []
    layers = config.model.num_layers
    for tp in _divisors(min(gpus_per_node, world_size)):
        for cp in (c for c in _divisors(gpus_per_node // tp) if c & (c - 1) == 0):
            for pp in _divisors(layers):
                if world_size % (tp * cp * pp):
                    continue
                vps: list[int | None] = [None]
                if pp >= 3:
                    vps += [v for v in _divisors(layers // pp) if v > 1]
                for vp in vps:
                    layout = with_layout(config, tp, pp, vp, cp)
                    try:
                        check_layout(layout, world_size)
                    except UserError:
                        continue
                    found.append(evaluate(layout, world_size, usable_bytes))
    return sorted(
        found,
        key=lambda c: (
            not c.fits,
            round(c.bubble, 4),
            c.config.parallel.tensor_model_parallel_size * c.config.parallel.context_parallel_size,
            c.memory.total,
        ),
    )
