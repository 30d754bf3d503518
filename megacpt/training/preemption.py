"""Preemption: a signal asks the run to checkpoint at the next step boundary and exit for requeue.

Slurm warns a job before it preempts or times it out (``#SBATCH --signal=USR1@600`` sends SIGUSR1
to every task; ``scancel`` and the time limit send SIGTERM, then SIGKILL after ``KillWait``). The
handler only sets a flag, because saving inside a signal handler would interleave with collective
calls. After each step every rank contributes its flag to one all-reduce (MAX), so all ranks agree
on the same step to stop at even when the signal reached them at different moments; they then save
and leave with ``PREEMPTED_EXIT_CODE``, which ``slurm/common.sh`` turns into ``scontrol requeue``.
"""

from __future__ import annotations

import contextlib
import signal
import types
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from megacpt.errors import UserError

# EX_TEMPFAIL from sysexits.h: "try again later", which is what a preempted run asks for.
PREEMPTED_EXIT_CODE = 75


class PreemptedError(Exception):
    """The run saved a checkpoint and stopped because a preemption signal arrived."""

    def __init__(self, signal_name: str, step: int) -> None:
        super().__init__(f"preempted by {signal_name}: checkpoint saved at step {step}")
        self.signal_name = signal_name
        self.step = step


def parse_signals(names: Sequence[str]) -> list[signal.Signals]:
    """``["SIGUSR1", "TERM"]`` -> signals; an unknown name is a ``UserError``."""
    result = []
    for name in names:
        full = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
        try:
            result.append(signal.Signals[full])
        except KeyError:
            raise UserError(f"checkpoint.preempt_signals: unknown signal {name!r}") from None
    return result


_Handler = Callable[[int, types.FrameType | None], object] | int | signal.Handlers | None


class PreemptionWatch:
    """Catches the preemption signals from construction until ``close()``."""

    def __init__(self, names: Sequence[str], device: torch.device) -> None:
        self.device = device
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, _Handler] = {}
        for sig in parse_signals(names):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        self.received = signal.Signals(signum)

    def agreed(self) -> signal.Signals | None:
        """The signal if any rank has received one (a collective: every rank must call it)."""
        flag = torch.tensor([int(self.received or 0)], dtype=torch.int64, device=self.device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return signal.Signals(int(flag[0])) if int(flag[0]) else None

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold the preemption signals back in this thread meanwhile (around a checkpoint save).

        Slurm signals every process of a job step, and a helper process started here (the
        checkpoint writer's multiprocessing workers) would die of SIGUSR1 mid-save; started with
        the signals blocked, it inherits the mask and survives. The run still sees the signal: it
        stays pending until the mask is restored, then sets the flag.
        """
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(self._previous))
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def close(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
