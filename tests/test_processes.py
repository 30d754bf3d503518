"""Tier 1: a killed run leaves no process behind (``megacpt.processes``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

# A parent that starts a forked child (as Megatron's checkpoint writer does) and a spawned pool
# worker (as preprocessing does), prints their pids, then waits to be killed.
_PARENT = """
import multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from megacpt.processes import children_die_with_parent, die_with_parent

children_die_with_parent()
forked = mp.get_context("fork").Process(target=time.sleep, args=(120,))
forked.start()
pool = ProcessPoolExecutor(1, mp.get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),))
spawned = pool.submit(os.getpid).result()
print(forked.pid, spawned, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_children_die_with_a_killed_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == 2 and all(psutil.pid_exists(pid) for pid in children)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in children)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
