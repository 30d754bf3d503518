"""Training entry point: ``torchrun --nproc-per-node N -m megacpt.train CONFIG.yaml [key=value ...]``.

Config -> build -> train -> close. Bad input is one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from megacpt.config import load_config
from megacpt.errors import exits_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m megacpt.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.train_steps=100")
    return parser.parse_args(argv)


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    # Megatron-core warns at import time that the optional fused kernels are absent; that is expected.
    warnings.filterwarnings("ignore", message=r".*(Apex|Transformer Engine).* (is|are) not installed")
    from megacpt.training.trainer import Trainer  # after the config is known good: heavy imports

    trainer = Trainer(config)
    try:
        trainer.train()
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
