"""Memory figures of this process from ``/proc/self/status`` (Linux), shared by the memory benches."""

from __future__ import annotations

from pathlib import Path


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status``: ``VmRSS``, ``VmHWM`` (peak RSS), ``RssAnon``, ..."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")
