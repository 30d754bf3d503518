"""Where and how ``megacpt clean --executor slurm`` submits its jobs (light: the command line imports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlurmSettings:
    """Where and how ``executor="slurm"`` submits the stages' jobs."""

    partition: str
    time: str = "24:00:00"  # each job's time limit
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
