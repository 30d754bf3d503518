"""``sbatch slurm/pretrain_70b.sh`` on a real single-node Slurm cluster, with a tiny CPU config.

The cluster (munged, slurmctld, slurmd on localhost) is started by ``scripts/slurm-local.sh``;
the tests skip without root or without Slurm's binaries. The 70B template runs as shipped, its
#SBATCH resources overridden on the command line (1 node, 2 tasks, no GPUs) and its config
given through ``CONFIG``, exactly as a user would shrink it. One job runs uninterrupted; a second
is sent Slurm's warning signal mid-run and must save, requeue itself, resume, and log the same
losses step for step; a third is signalled while it writes a checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.slurm.local_cluster import (
    LOCAL_CLUSTER,
    Cluster,
    local_cluster,
    logged_steps,
    losses,
    output,
    tiny_yaml,
)

pytestmark = pytest.mark.multiproc

TEMPLATE = REPO / "slurm" / "pretrain_70b.sh"
SHELL_SCRIPTS = [*sorted((REPO / "slurm").glob("*.sh")), LOCAL_CLUSTER]
STEPS, SAVE_INTERVAL = 20, 8
ONE_NODE = ["--nodes=1", "--ntasks-per-node=2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from local_cluster(tmp_path_factory)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~200k-parameter TP=2 config over the bundled English text."""
    return tiny_yaml(
        tmp_path_factory.mktemp("sbatch"), {"tensor_model_parallel_size": 2}, STEPS, SAVE_INTERVAL
    )


def submit(cluster: Cluster, run_dir: Path, config: Path, *overrides: str) -> str:
    """``sbatch`` the 70B template shrunk to 2 CPU tasks on this node; the job id."""
    return cluster.submit(TEMPLATE, run_dir, config, ONE_NODE, *overrides)


def outcome(info: dict[str, str]) -> tuple[str, str, str]:
    """A finished job's state, exit code (status:signal) and number of requeues."""
    return info["JobState"], info["ExitCode"], info["Restarts"]


@pytest.fixture(scope="module")
def uninterrupted(cluster: Cluster, config: Path, tmp_path_factory: pytest.TempPathFactory):
    """An sbatch job trained to the end without interruption: its run dir and job record."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    job = submit(cluster, run_dir, config)
    return run_dir, cluster.wait_until_finished(job, run_dir)


def test_sbatch_trains_to_completion_and_writes_checkpoints(uninterrupted):
    run_dir, info = uninterrupted
    assert outcome(info) == ("COMPLETED", "0:0", "0"), output(run_dir)
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("iter_*"))
    assert checkpoints == [f"iter_{step:07d}" for step in range(SAVE_INTERVAL, STEPS + 1, SAVE_INTERVAL)] + [
        f"iter_{STEPS:07d}"
    ]
    log = (run_dir / "logs" / f"slurm-{info['JobId']}.log").read_text()
    # The first node's NodeAddr (slurm-local.sh: the loopback address), a port derived from the job id.
    assert f"rendezvous 127.0.0.1:{20000 + int(info['JobId']) % 20000}" in log
    assert "training exited with status 0" in log
    learnt = losses(run_dir)
    assert learnt[-1] < learnt[0] - 0.5  # it learned something: the ranks really trained together


def test_preempted_job_saves_requeues_and_resumes_exactly(
    cluster: Cluster, config: Path, uninterrupted, tmp_path: Path
):
    run_dir = tmp_path / "run"
    job = submit(cluster, run_dir, config)
    cluster.wait_while_running(job, run_dir, lambda: max(logged_steps(run_dir), default=0) >= 2, 0.2)
    # What --signal=USR1@900 does before the time limit: SIGUSR1 to every task of the job's steps.
    cluster.run("scancel", "--signal=USR1", job, check=True)
    info = cluster.wait_until_finished(job, run_dir)

    assert outcome(info) == ("COMPLETED", "0:0", "1"), output(run_dir)
    log = (run_dir / "logs" / f"slurm-{job}.log").read_text()
    saved = re.search(r"checkpoint saved at step (\d+)", log)
    assert saved and "requeueing job" in log and "restart 1:" in log, log[-4000:]
    stop = int(saved.group(1))
    assert 2 <= stop < STEPS, f"the signal landed at step {stop}, not mid-run"
    assert (run_dir / "checkpoints" / f"iter_{stop:07d}").is_dir()
    # Every step logged once (none lost or repeated across the requeue), with the same losses.
    reference_dir, _ = uninterrupted
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert losses(run_dir) == losses(reference_dir)


def test_signal_during_a_checkpoint_save_still_saves_and_requeues(
    cluster: Cluster, config: Path, tmp_path: Path
):
    run_dir, steps = tmp_path / "run", 8
    job = submit(cluster, run_dir, config, "checkpoint.save_interval=1", f"training.train_steps={steps}")
    # iter_N.tmp exists only while a checkpoint is being written.
    saving = lambda: any((run_dir / "checkpoints").glob("iter_*.tmp"))  # noqa: E731
    cluster.wait_while_running(job, run_dir, saving, 0.01)
    cluster.run("scancel", "--signal=USR1", job, check=True)
    info = cluster.wait_until_finished(job, run_dir)
    assert outcome(info) == ("COMPLETED", "0:0", "1"), output(run_dir)
    assert logged_steps(run_dir) == list(range(1, steps + 1))


def test_missing_config_is_one_clear_error(cluster: Cluster, tmp_path: Path):
    run_dir = tmp_path / "run"
    info = cluster.wait_until_finished(submit(cluster, run_dir, tmp_path / "absent.yaml"), run_dir)
    assert outcome(info) == ("FAILED", "2:0", "0")
    assert output(run_dir).strip() == f"error: config '{tmp_path / 'absent.yaml'}' not found" + (
        f" (relative paths start at {REPO}; set CONFIG=...)"
    )


def test_invalid_layout_is_refused_before_any_task_starts(cluster: Cluster, config: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    job = submit(cluster, run_dir, config, "parallel.tensor_model_parallel_size=3")
    assert outcome(cluster.wait_until_finished(job, run_dir)) == ("FAILED", "2:0", "0")
    said = output(run_dir)
    assert "error: " in said and "tensor_model_parallel_size" in said, said
    assert "the config is not valid for 2 tasks; nothing was started" in said, said
    assert not (run_dir / "metrics.jsonl").exists()


@pytest.mark.parametrize("template", ["pretrain_70b.sh", "pretrain_8b.sh"])
def test_template_outside_sbatch_is_one_clear_error(template: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", str(REPO / "slurm" / template)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == "error: submit this script with sbatch (no SLURM_JOB_ID)\n"


def test_shell_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed; scripts/test-deps.sh installs it")
    result = subprocess.run(["shellcheck", "-x", *map(str, SHELL_SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_templates_share_one_launcher():
    """Each template only sets resources and a default config, then sources slurm/common.sh."""
    for template in ("pretrain_70b.sh", "pretrain_8b.sh"):
        text = (REPO / "slurm" / template).read_text()
        code = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        assert code[-1] == '. "$MEGACPT_ROOT/slurm/common.sh"'
        assert "srun" not in "\n".join(code)
        config = re.search(r'CONFIG="\$\{CONFIG:-(\S+)\}"', text)
        assert config and (REPO / config.group(1)).is_file()
        assert "#SBATCH --requeue" in text and re.search(r"#SBATCH --signal=USR1@\d+", text)
