"""A Slurm cluster on this machine for the tests (``scripts/slurm-local.sh``, one node or two in
network namespaces), and what the tests ask of its jobs: submit a template, read its record, wait."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import CORPORA, REPO, read_metrics, tiny_config, write_byte_dataset

LOCAL_CLUSTER = REPO / "scripts" / "slurm-local.sh"
SLURM = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "sinfo", "scancel")
NAMESPACES = ("ip", "nsenter")  # the two-node mode's network namespaces
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}


class Cluster:
    """A running local cluster: its Slurm environment, nodes (name -> address) and namespaces."""

    def __init__(self, state: Path) -> None:
        self.env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
        conf = (state / "slurm.conf").read_text()
        self.nodes = dict(re.findall(r"^NodeName=(\S+) NodeAddr=(\S+)", conf, re.M))
        listed = state / "nodes"
        self.namespaces = listed.read_text().split() if listed.exists() else []

    def run(self, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, **kwargs)

    def submit(self, template: Path, run_dir: Path, config: Path, resources: list[str], *overrides: str,
               **job_env: str) -> str:  # fmt: skip
        """``sbatch`` a template on CPU tasks with ``CONFIG`` and ``RUN_DIR``; the job id."""
        env = dict(self.env, CONFIG=str(config), RUN_DIR=str(run_dir), PYTHON=sys.executable,
                   OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **job_env)  # fmt: skip
        cmd = ["sbatch", "--parsable", *resources, "--gpus-per-node=0", "--cpus-per-task=1"]
        # --output: the template's default would write into the repository
        cmd += [f"--output={run_dir}.out", str(template), *overrides]
        result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().split(";")[0]

    def job_info(self, job: str) -> dict[str, str]:
        """``scontrol show job``'s fields (``JobState``, ``ExitCode``, ``Restarts``, ...)."""
        return dict(re.findall(r"(\w+)=(\S*)", self.run("scontrol", "show", "job", "-o", job).stdout))

    def wait_until_finished(self, job: str, run_dir: Path, timeout: float = 300) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job_info(job)
            if info.get("JobState") in FINISHED:
                return info
            time.sleep(0.5)
        self.run("scancel", job)
        raise AssertionError(f"job {job} not finished after {timeout:.0f} s:\n{output(run_dir)}")

    def wait_while_running(self, job: str, run_dir: Path, ready: Callable[[], bool], poll: float,
                           timeout: float = 240) -> None:  # fmt: skip
        """Poll ``ready`` until true; fail if the job leaves PENDING/RUNNING or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while not ready():
            state = self.job_info(job).get("JobState")
            assert state in {"PENDING", "RUNNING"} and time.monotonic() < deadline, output(run_dir)
            time.sleep(poll)


def local_cluster(tmp_path_factory: pytest.TempPathFactory, nodes: int = 1) -> Iterator[Cluster]:
    """Start a cluster of ``nodes`` for a module's tests and stop it after; skip where it cannot run."""
    missing = [cmd for cmd in SLURM + (NAMESPACES if nodes > 1 else ()) if shutil.which(cmd) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/test-deps.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip("a local Slurm cluster needs root (slurmd starts jobs as their user; namespaces)")
    state = tmp_path_factory.mktemp(f"slurm{nodes}")
    env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    start = ["bash", str(LOCAL_CLUSTER), "start", str(state), *([str(nodes)] if nodes > 1 else [])]
    try:
        subprocess.run(start, check=True, timeout=90, env=env)
        yield Cluster(state)
    finally:
        subprocess.run(["bash", str(LOCAL_CLUSTER), "stop", str(state)], timeout=180, env=env)


def tiny_yaml(root: Path, parallel: dict[str, int], steps: int, save_interval: int) -> Path:
    """A tiny config over the bundled English text, as a YAML file (the template sets the run dir)."""
    prefix = write_byte_dataset(root / "en_bytes", CORPORA / "en" / "wikitext2_valid.jsonl")
    values = tiny_config(
        prefix,
        root / "unused",
        parallel=parallel,
        training={"train_steps": steps, "global_batch_size": 16, "log_interval": 1},
        checkpoint={"save_interval": save_interval},
    )
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def logged_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir)] if (run_dir / "metrics.jsonl").exists() else []


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir)]


def output(run_dir: Path) -> str:
    """The job's output, for assertion messages."""
    out = Path(f"{run_dir}.out")
    return out.read_text()[-4000:] if out.exists() else "(no output)"
