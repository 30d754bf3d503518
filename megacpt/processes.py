"""Child processes die with their parent.

A ``kill -9`` of a training or preprocessing run must not leave its workers behind: they hold
memory, keep writing partial files, and race the rerun. On Linux each child asks the kernel for
SIGKILL when its parent exits (``prctl(PR_SET_PDEATHSIG)``, through ``ctypes``: the standard
library has no binding, and a dependency for one call is not worth it). Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_registered = False


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask for SIGKILL when this process's parent exits. ``parent_pid`` (the parent expected) closes
    the race where the parent died before the request: the process then exits at once."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # not permitted here (a sandbox): the parent's own clean-up still applies
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def children_die_with_parent() -> None:
    """Every process forked from now on (by this process or its children) dies with its parent;
    idempotent."""
    global _registered
    if _registered:
        return
    forking = [os.getpid()]

    def _before() -> None:
        forking[0] = os.getpid()

    os.register_at_fork(before=_before, after_in_child=lambda: die_with_parent(forking[0]))
    _registered = True
