"""``megacpt plan CONFIG --nodes N``: validate a layout for a cluster before a job waits for its nodes.

It validates a config's layout for a cluster, estimates per-GPU memory and FLOPs, builds
the model of the first and last pipeline ranks on the meta device to prove the shapes, and ranks
the layouts that fit a GPU. It runs on a CPU, before a job waits for its nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from megacpt.config import load_config
from megacpt.errors import exits_on_user_error
from megacpt.options import COUNT, POSITIVE, flag, parse, ranged


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """``megacpt plan``'s options."""

    config: str = flag(positional=True)
    """YAML training config"""
    overrides: tuple[str, ...] = flag((), positional=True)
    """dotted overrides, e.g. parallel.tensor_model_parallel_size=4"""
    nodes: int = flag(type=COUNT)
    """nodes of the job"""
    gpus_per_node: int = flag(8, type=COUNT)
    """GPUs of one node"""
    gpu_memory_gib: float = flag(80.0, type=POSITIVE)
    """memory of one GPU (H100: 80)"""
    reserve_gib: float = flag(6.0, type=ranged(float, 0))
    """memory kept free for the CUDA context, NCCL buffers and fragmentation (a rule of thumb)"""
    top: int = flag(10, type=COUNT)
    """how many ranked layouts to print"""
    mfu: float = flag(0.5, type=ranged(float, 0, 1, above=True))
    """utilisation for the step-time projection"""
    step_time: float | None = flag(None, type=POSITIVE)
    """a measured step time (s), to report its MFU"""
    no_build: bool = False
    """skip the meta-device build"""


def plan(args: PlanOptions) -> int:
    """Print the plan; exit status 1 when the configured layout does not fit or shapes disagree."""
    from megacpt.plan import report
    from megacpt.plan.layouts import GIB, candidates, check_layout, evaluate
    from megacpt.plan.meta_build import check_shapes

    config = load_config(args.config, list(args.overrides))
    world = args.nodes * args.gpus_per_node
    check_layout(config, world)  # an impossible layout stops here, before any process group
    usable = (args.gpu_memory_gib - args.reserve_gib) * GIB
    configured = evaluate(config, world, usable)
    out = [
        f"plan for {args.config} on {args.nodes} nodes x {args.gpus_per_node} GPUs = {world} GPUs",
        report.model_line(config),
        f"configured layout: {configured.label}, {configured.microbatches} microbatches per step, "
        f"pipeline bubble {configured.bubble:.3f}",
        *report.memory_lines(configured, usable),
        *report.flops_lines(config, world, args.step_time, args.mfu),
    ]
    print("\n".join(out), flush=True)
    status = 0 if configured.fits else 1
    if not args.no_build:
        checks = check_shapes(config)
        print("\n".join(report.shape_lines(checks)), flush=True)
        status = max(status, 0 if all(c.ok for c in checks) else 1)
    ranked = candidates(config, world, args.gpus_per_node, usable)
    print(f"\nlayouts on {world} GPUs, best first ({sum(c.fits for c in ranked)} of {len(ranked)} fit):")
    print("\n".join(report.ranking_table(ranked, args.top)))
    return status


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    # intermixed: options may follow the dotted overrides
    options = parse(PlanOptions, argv, __doc__.splitlines()[0], intermixed=True, module_form="megacpt plan")
    return plan(options)
