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
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import CORPORA, REPO, read_metrics, tiny_config, write_byte_dataset

pytestmark = pytest.mark.multiproc

LOCAL_CLUSTER = REPO / "scripts" / "slurm-local.sh"
TEMPLATE = REPO / "slurm" / "pretrain_70b.sh"
SHELL_SCRIPTS = [*sorted((REPO / "slurm").glob("*.sh")), LOCAL_CLUSTER]
NEEDED = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "sinfo", "scancel")
STEPS, SAVE_INTERVAL = 20, 8
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment for Slurm commands (``SLURM_CONF``) while the cluster runs; stopped after."""
    missing = [cmd for cmd in NEEDED if shutil.which(cmd) is None]
    if missing:
        pytest.skip(f"Slurm/munge not installed ({', '.join(missing)}); scripts/test-deps.sh installs them")
    if os.geteuid() != 0:
        pytest.skip("a local Slurm cluster needs root (slurmd starts jobs as their user)")
    state = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    try:
        subprocess.run(["bash", str(LOCAL_CLUSTER), "start", str(state)], check=True, timeout=60, env=env)
        yield env
    finally:
        subprocess.run(["bash", str(LOCAL_CLUSTER), "stop", str(state)], timeout=120, env=env)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~200k-parameter TP=2 config over the bundled English text, as a YAML file."""
    root = tmp_path_factory.mktemp("sbatch")
    prefix = write_byte_dataset(root / "en_bytes", CORPORA / "en" / "wikitext2_valid.jsonl")
    values = tiny_config(
        prefix,
        root / "unused",  # the template sets logging.run_dir from RUN_DIR
        parallel={"tensor_model_parallel_size": 2},
        training={"train_steps": STEPS, "global_batch_size": 16, "log_interval": 1},
        checkpoint={"save_interval": SAVE_INTERVAL},
    )
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def submit(env: dict[str, str], run_dir: Path, config: Path, *overrides: str) -> str:
    """``sbatch`` the 70B template shrunk to 2 CPU tasks on this node; the job id."""
    job_env = dict(
        env,
        CONFIG=str(config),
        RUN_DIR=str(run_dir),
        PYTHON=sys.executable,
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )
    resources = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1"]
    output = f"--output={run_dir}.out"  # the template's default would write into the repository
    cmd = ["sbatch", "--parsable", *resources, output, str(TEMPLATE), *overrides]
    result = subprocess.run(cmd, cwd=REPO, env=job_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def job_info(env: dict[str, str], job: str) -> dict[str, str]:
    """``scontrol show job``'s fields (``JobState``, ``ExitCode``, ``Restarts``, ...)."""
    text = subprocess.run(
        ["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def wait_until_finished(env: dict[str, str], job: str, timeout: float = 240) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = job_info(env, job)
        if info["JobState"] in FINISHED:
            return info
        time.sleep(0.5)
    subprocess.run(["scancel", job], env=env)
    raise AssertionError(f"job {job} still {info['JobState']} after {timeout:.0f} s")


def outcome(info: dict[str, str]) -> tuple[str, str, str]:
    """A finished job's state, exit code (status:signal) and number of requeues."""
    return info["JobState"], info["ExitCode"], info["Restarts"]


def logged_steps(run_dir: Path) -> list[int]:
    return (
        []
        if not (run_dir / "metrics.jsonl").exists()
        else [record["step"] for record in read_metrics(run_dir)]
    )


def wait_while_running(
    env: dict[str, str], job: str, run_dir: Path, ready: Callable[[], bool], poll: float, timeout: float = 180
) -> None:
    """Poll ``ready`` until true; fail if the job leaves PENDING/RUNNING or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not ready():
        state = job_info(env, job)["JobState"]
        assert state in {"PENDING", "RUNNING"} and time.monotonic() < deadline, describe(run_dir)
        time.sleep(poll)


def describe(run_dir: Path) -> str:
    """The job's output, for assertion messages."""
    out = Path(f"{run_dir}.out")
    return out.read_text()[-4000:] if out.exists() else "(no output)"


@pytest.fixture(scope="module")
def uninterrupted(slurm_env: dict[str, str], config: Path, tmp_path_factory: pytest.TempPathFactory):
    """An sbatch job trained to the end without interruption: its run dir and job record."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    job = submit(slurm_env, run_dir, config)
    return run_dir, wait_until_finished(slurm_env, job)


def test_sbatch_trains_to_completion_and_writes_checkpoints(uninterrupted):
    run_dir, info = uninterrupted
    assert outcome(info) == ("COMPLETED", "0:0", "0"), describe(run_dir)
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("iter_*"))
    assert checkpoints == [f"iter_{step:07d}" for step in range(SAVE_INTERVAL, STEPS + 1, SAVE_INTERVAL)] + [
        f"iter_{STEPS:07d}"
    ]
    log = (run_dir / "logs" / f"slurm-{info['JobId']}.log").read_text()
    # The first node's NodeAddr (slurm-local.sh: the loopback address), a port derived from the job id.
    assert f"rendezvous 127.0.0.1:{20000 + int(info['JobId']) % 20000}" in log
    assert "training exited with status 0" in log
    losses = [r["loss"] for r in read_metrics(run_dir)]
    assert losses[-1] < losses[0] - 0.5  # it learned something: the ranks really trained together


def test_preempted_job_saves_requeues_and_resumes_exactly(
    slurm_env: dict[str, str], config: Path, uninterrupted, tmp_path: Path
):
    run_dir = tmp_path / "run"
    job = submit(slurm_env, run_dir, config)
    wait_while_running(slurm_env, job, run_dir, lambda: max(logged_steps(run_dir), default=0) >= 2, 0.2)
    # What --signal=USR1@900 does before the time limit: SIGUSR1 to every task of the job's steps.
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm_env, check=True)
    info = wait_until_finished(slurm_env, job)

    assert outcome(info) == ("COMPLETED", "0:0", "1"), describe(run_dir)
    log = (run_dir / "logs" / f"slurm-{job}.log").read_text()
    saved = re.search(r"checkpoint saved at step (\d+)", log)
    assert saved and "requeueing job" in log and "restart 1:" in log, log[-4000:]
    stop = int(saved.group(1))
    assert 2 <= stop < STEPS, f"the signal landed at step {stop}, not mid-run"
    assert (run_dir / "checkpoints" / f"iter_{stop:07d}").is_dir()
    # Every step logged once (none lost or repeated across the requeue), with the same losses.
    reference_dir, _ = uninterrupted
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert [r["loss"] for r in read_metrics(run_dir)] == [r["loss"] for r in read_metrics(reference_dir)]


def test_signal_during_a_checkpoint_save_still_saves_and_requeues(
    slurm_env: dict[str, str], config: Path, tmp_path: Path
):
    run_dir, steps = tmp_path / "run", 8
    job = submit(slurm_env, run_dir, config, "checkpoint.save_interval=1", f"training.train_steps={steps}")
    # iter_N.tmp exists only while a checkpoint is being written.
    saving = lambda: any((run_dir / "checkpoints").glob("iter_*.tmp"))  # noqa: E731
    wait_while_running(slurm_env, job, run_dir, saving, 0.01)
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm_env, check=True)
    info = wait_until_finished(slurm_env, job)
    assert outcome(info) == ("COMPLETED", "0:0", "1"), describe(run_dir)
    assert logged_steps(run_dir) == list(range(1, steps + 1))


def test_missing_config_is_one_clear_error(slurm_env: dict[str, str], tmp_path: Path):
    run_dir = tmp_path / "run"
    info = wait_until_finished(slurm_env, submit(slurm_env, run_dir, tmp_path / "absent.yaml"))
    assert outcome(info) == ("FAILED", "2:0", "0")
    assert describe(run_dir).strip() == f"error: config '{tmp_path / 'absent.yaml'}' not found" + (
        f" (relative paths start at {REPO}; set CONFIG=...)"
    )


def test_invalid_layout_is_refused_before_any_task_starts(
    slurm_env: dict[str, str], config: Path, tmp_path: Path
):
    run_dir = tmp_path / "run"
    job = submit(slurm_env, run_dir, config, "parallel.tensor_model_parallel_size=3")
    assert outcome(wait_until_finished(slurm_env, job)) == ("FAILED", "2:0", "0")
    output = describe(run_dir)
    assert "error: " in output and "tensor_model_parallel_size" in output, output
    assert "the config is not valid for 2 tasks; nothing was started" in output, output
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
