"""Training entry point: ``torchrun --nproc-per-node N -m megacpt.train CONFIG.yaml [key=value ...]``.

Config -> build -> train -> close. Bad input is one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import yaml

from megacpt.config import Config, load_config
from megacpt.config.loader import to_dict
from megacpt.config.validate import data_parallel_size, validate_checkpoints, validate_data, validate_layout
from megacpt.errors import UserError, exits_on_user_error, say_error
from megacpt.options import COUNT, flag, parse
from megacpt.training.stages import budget_note, resolve_stages


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """``megacpt train``'s options."""

    config: str = flag(positional=True)
    """YAML config file"""
    overrides: tuple[str, ...] = flag((), positional=True)
    """dotted overrides, e.g. training.train_steps=100"""
    dry_run: bool = False
    """load and validate the config for --world-size processes, then exit without training"""
    world_size: int | None = flag(None, type=COUNT, default_text="TP x PP x CP")
    """with --dry-run: processes of the real job"""
    layout_only: bool = False
    """with --dry-run: check the config and layout only, not the files it names (a config whose data
    and checkpoints live on another machine)"""

    def __post_init__(self) -> None:
        if self.world_size is not None and not self.dry_run:
            raise UserError("--world-size applies only with --dry-run (a real run takes torchrun's world)")


def dry_run(config: Config, world_size: int | None, layout_only: bool = False) -> None:
    """Validate the layout for the job's world size, and (unless ``layout_only``) what the run will
    open: data files and their headers, the pretrained checkpoint's metadata, writable output
    folders. Print the config."""
    p = config.parallel
    world = (
        world_size or p.tensor_model_parallel_size * p.pipeline_model_parallel_size * p.context_parallel_size
    )
    validate_layout(config, world, this_machine=False)
    note = budget_note(resolve_stages(config), config)
    if note:
        print(note, file=sys.stderr)
    if not layout_only:
        validate_data(config)
        validate_checkpoints(config)
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    print(f"# valid for {world} processes (data parallel size {data_parallel_size(config, world)})")


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parse(
        TrainOptions, argv, __doc__.splitlines()[0], intermixed=True, module_form="python -m megacpt.train"
    )
    config = load_config(args.config, list(args.overrides))
    from megacpt.training.preemption import PREEMPTED_EXIT_CODE, PreemptedError, parse_signals  # torch

    parse_signals(config.checkpoint.preempt_signals)
    if args.dry_run:
        dry_run(config, args.world_size, args.layout_only)
        return 0
    from megacpt.parallel.runtime import lost_peer  # heavy: after the config is good
    from megacpt.training.trainer import NonFiniteLossError, Trainer

    trainer = Trainer(config)
    try:
        trainer.train()
    except PreemptedError as preempted:  # every rank stops at the same step, after the same save
        trainer.close()
        if trainer.runtime.rank == 0:
            print(f"[megacpt] {preempted}; exiting with status {PREEMPTED_EXIT_CODE} for requeue", flush=True)
        return PREEMPTED_EXIT_CODE
    except NonFiniteLossError as error:
        trainer.close(wait_for_others=False)
        say_error(str(error))
        return 1
    except RuntimeError as error:
        trainer.close(wait_for_others=False)
        lost = lost_peer(error)
        if lost is None:
            raise
        say_error(
            f"rank {trainer.runtime.rank} lost another rank during step {trainer.state.step + 1} "
            f"(a rank or node died): {lost}; the run resumes from the latest checkpoint in "
            f"{trainer.ckpt_dir} when restarted (a requeued Slurm job does so itself)"
        )
        return 1
    except BaseException:
        trainer.close(wait_for_others=False)  # the others may never arrive: fail fast, torchrun stops them
        raise
    trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
