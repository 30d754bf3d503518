"""Run one pipeline step as a subprocess: its output goes to a log file, training shows a progress bar.

Every step of the quickstart is one of megacpt's own command lines (``python -m megacpt VERB`` or
a training launch), so the pipeline exercises exactly what a user would type. The console gets one
line per step; a training step instead gets a ``tqdm`` bar fed by the trainer's ``step N | loss ...``
lines. The full output is kept in ``<out>/logs/<step>.log`` and its tail is shown when a step fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from tqdm import tqdm

import megacpt as package
from megacpt.errors import UserError

# The folder holding this megacpt package (a checkout or site-packages): the steps import the same code.
PACKAGE_HOME = Path(package.__file__).resolve().parent.parent
_STEP_LINE = re.compile(r"^step\s+(\d+) \| loss ([-+0-9.eE]+|nan|inf)")


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_HOME), env.get("PYTHONPATH", "")) if p)
    env["PYTHONWARNINGS"] = "ignore"  # Megatron's deprecation chatter; the log keeps everything else
    return env


def run_step(
    name: str, argv: list[str], log: Path, *, threads: int = 2, train_steps: int | None = None
) -> None:
    """Run ``argv`` (every path in it absolute), logging to ``log``; a bar of ``train_steps`` if given.

    Raises ``UserError`` naming the log when the command fails, after printing the log's last lines.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bar = tqdm(total=train_steps, desc=name, unit="step", dynamic_ncols=True) if train_steps else None
    if bar is None:
        print(f"  {name} ...", end="", flush=True)
    tail: deque[str] = deque(maxlen=25)
    with log.open("w", encoding="utf-8") as sink:
        sink.write("$ " + " ".join(argv) + "\n")
        proc = subprocess.Popen(
            argv,
            env=_env(threads),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            tail.append(line)
            match = _STEP_LINE.match(line)
            if bar is not None and match:
                bar.set_postfix(loss=match.group(2), refresh=False)
                bar.update(int(match.group(1)) - bar.n)
        code = proc.wait()
    if bar is not None:
        bar.close()
    if code != 0:
        if bar is None:
            print(" failed")
        sys.stderr.write("".join(tail))
        raise UserError(f"step '{name}' failed with exit status {code}; full output in {log}")
    if bar is None:
        print(f" done ({time.perf_counter() - start:.0f} s)")


def python(*args: str | Path) -> list[str]:
    """A command line running this interpreter."""
    return [sys.executable, *map(str, args)]


def megacpt(verb: str, *args: str | Path) -> list[str]:
    """A command line running ``megacpt VERB`` with this interpreter."""
    return python("-m", "megacpt", verb, *args)


def torchrun(nproc: int, *args: str | Path) -> list[str]:
    """A command line launching ``nproc`` processes on this machine with ``torch.distributed.run``."""
    return python("-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args)
