"""``megacpt.train`` plus one validation pass before the first step, for the quickstart.

``torchrun ... -m megacpt.pipeline.train_entry CONFIG [key=value ...]``. The trainer validates only
every ``training.eval_interval`` steps; the quickstart's report needs each language's loss where the
run *started* (the resized model, before any update) to show how far it moved, so a fresh run logs
one ``val_loss/<lang>`` record at step 0 first. A resumed run does not repeat it.
"""

from __future__ import annotations

import sys
import warnings

from megacpt.config import load_config
from megacpt.errors import exits_on_user_error


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m megacpt.pipeline.train_entry CONFIG [key=value ...]")
    config = load_config(args[0], args[1:])
    warnings.filterwarnings("ignore", message=r".*(Apex|Transformer Engine).* (is|are) not installed")
    from megacpt.training.trainer import Trainer  # heavy imports, after the config is known good

    trainer = Trainer(config)
    try:
        if trainer.state.step == 0 and trainer.valid_data:
            trainer.metrics.log(0, trainer.evaluate())
        trainer.train()
    except BaseException:
        trainer.close(wait_for_others=False)  # as megacpt.train: fail fast, torchrun stops the others
        raise
    trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
