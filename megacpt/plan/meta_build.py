"""Build one GPU's model chunks on the meta device, to prove a layout's shapes without memory.

A single process joins a ``fake`` torch.distributed world (``torch.testing``'s ``FakeStore``:
collectives are no-ops, so no peers are needed) as the rank of its choice, Megatron-core's
parallel state is initialised on it (without gloo groups, which would wait for real peers), and
the real ``megacpt.model.builder.build_model`` runs under ``torch.device("meta")`` with
initialisation off: a 70B layout's rank is built in well under a second and allocates nothing.
The world is TP x PP ranks: data and context parallelism replicate a rank's model, so they
change no shape. The local layer spec is used; Transformer Engine's spec has the same parameters. Without
a GPU, ``megacpt.compat.cpu`` is applied, as for any CPU run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.distributed as dist

from megacpt.config.schema import Config
from megacpt.plan.memory import params_on_rank


@dataclass(frozen=True)
class ShapeCheck:
    """Parameters of one pipeline rank: built on the meta device vs. estimated."""

    pp_rank: int
    built: int
    estimated: int

    @property
    def ok(self) -> bool:
        return self.built == self.estimated


def _meta_config(config: Config) -> Config:
    """The config without FP8, TE and CP: the same shapes, buildable on any machine.

    CP splits only the sequence (and Megatron's local attention refuses it), so it goes too.
    """
    return dataclasses.replace(
        config,
        parallel=dataclasses.replace(config.parallel, context_parallel_size=1),
        model=dataclasses.replace(config.model, transformer_impl="local"),
        precision=dataclasses.replace(config.precision, fp8=None),
    )


def meta_params_on_rank(config: Config, pp_rank: int) -> int:
    """Parameters of the chunks that pipeline rank ``pp_rank`` (TP rank 0) builds, on meta."""
    from megatron.core import parallel_state

    from megacpt.compat import cpu as cpu_compat
    from megacpt.compat import dcp as dcp_compat
    from megacpt.config.megatron import transformer_config
    from megacpt.model.builder import build_model

    if dist.is_initialized():
        raise RuntimeError("meta_params_on_rank needs a process without torch.distributed initialised")
    config = _meta_config(config)
    p = config.parallel
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    cpu_compat.apply()  # on a CPU-only machine: e.g. a tied head's copy calls ``.cuda()``
    # Megatron's default rank order is tp-cp-dp-pp: with DP = CP = 1, a pipeline rank is TP ranks.
    dist.init_process_group("fake", store=dcp_compat.fake_store(), rank=pp_rank * tp, world_size=tp * pp)
    try:
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tp,
            pipeline_model_parallel_size=pp,
            virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
            create_gloo_process_groups=False,
        )
        assert parallel_state.get_pipeline_model_parallel_rank() == pp_rank
        tf_config = dataclasses.replace(
            transformer_config(config), perform_initialization=False, use_cpu_initialization=True
        )
        with torch.device("meta"):
            chunks = build_model(config, tf_config)
        params = [param for chunk in chunks for param in chunk.parameters()]
        assert all(param.is_meta for param in params)
        return sum(param.numel() for param in params)
    finally:
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()


def check_shapes(config: Config) -> list[ShapeCheck]:
    """Build the first and the last pipeline rank on meta and compare with the estimate."""
    last = config.parallel.pipeline_model_parallel_size - 1
    return [
        ShapeCheck(rank, meta_params_on_rank(config, rank), params_on_rank(config, rank))
        for rank in sorted({0, last})
    ]
