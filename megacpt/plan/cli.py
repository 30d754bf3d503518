"""``megacpt plan CONFIG --nodes N``: validate a layout for a cluster before a job waits for its nodes.

It validates a config's layout for a cluster, estimates per-GPU memory and FLOPs, builds
the model of the first and last pipeline ranks on the meta device to prove the shapes, and ranks
the layouts that fit a GPU. It runs on a CPU, before a job waits for its nodes.
"""

from __future__ import annotations

import argparse

from megacpt.config import load_config
from megacpt.errors import exits_on_user_error
from megacpt.options import COUNT, POSITIVE, ArgumentParser, ranged


def _parser() -> argparse.ArgumentParser:
    plan_parser = ArgumentParser(prog="megacpt plan", description=__doc__.splitlines()[0])
    plan_parser.add_argument("config", help="YAML training config")
    plan_parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. parallel.tensor_model_parallel_size=4"
    )
    plan_parser.add_argument("--nodes", type=COUNT, required=True, help="nodes of the job")
    plan_parser.add_argument("--gpus-per-node", type=COUNT, default=8)
    plan_parser.add_argument(
        "--gpu-memory-gib", type=POSITIVE, default=80.0, help="memory of one GPU (H100: 80)"
    )
    plan_parser.add_argument(
        "--reserve-gib",
        type=ranged(float, 0),
        default=6.0,
        help="memory kept free for the CUDA context, NCCL buffers and fragmentation (a rule of thumb)",
    )
    plan_parser.add_argument("--top", type=COUNT, default=10, help="how many ranked layouts to print")
    plan_parser.add_argument(
        "--mfu",
        type=ranged(float, 0, 1, above=True),
        default=0.5,
        help="utilisation for the step-time projection",
    )
    plan_parser.add_argument("--step-time", type=POSITIVE, help="a measured step time (s), to report its MFU")
    plan_parser.add_argument("--no-build", action="store_true", help="skip the meta-device build")
    return plan_parser


def plan(args: argparse.Namespace) -> int:
    """Print the plan; exit status 1 when the configured layout does not fit or shapes disagree."""
    from megacpt.plan import report
    from megacpt.plan.layouts import GIB, candidates, check_layout, evaluate
    from megacpt.plan.meta_build import check_shapes

    config = load_config(args.config, args.overrides)
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
    # Options may follow the dotted overrides.
    return plan(_parser().parse_intermixed_args(argv))
