"""One error type for bad user input, and the wrapper every tool's ``main`` runs under.

A ``UserError`` is something the user can fix (a bad flag, a missing file, an impossible layout):
tools print it as a single ``error: ...`` line and exit with status 2, never a traceback.
Ctrl-C is one line too (status 130): every output is published atomically (``megacpt.atomic``), so
an interrupted tool leaves the old output or none.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(ValueError):
    """Bad input a user can fix; reported as one line and a non-zero exit."""


# Megatron-core's import-time notes about optional kernels (Apex, Transformer Engine) that megacpt
# does not need, and its RowParallelLinear's own deprecation note (it passes ``tp_group=None`` to its
# matmul on every forward, in 0.16): noise before a tool's own output or error line.
FOREIGN_WARNINGS = (
    r".*(Apex|Transformer Engine).* (is|are) not installed",
    r".*scope is deprecated",
    r"If you are using transformer_engine",
    r"Warning: tp_group is None, using default tp group",
)
INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT


def say_error(message: str) -> None:
    """Print ``error: message`` as one write, so that the lines of ranks sharing a stderr pipe never
    interleave (``print`` writes the text and its newline apart)."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def exits_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a tool's ``main``: a ``UserError`` prints ``error: ...`` and exits 2, Ctrl-C prints one
    line and exits 130, and Megatron-core's notes about optional kernels are not shown."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        for message in FOREIGN_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            return main(*args, **kwargs)
        except UserError as err:
            say_error(str(err))
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            say_error("interrupted; no output was half-written")
            raise SystemExit(INTERRUPTED) from None

    return wrapped
