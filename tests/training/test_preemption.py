"""A preemption signal saves and exits 75, and the rerun resumes exactly; non-finite losses stop a run.

The signal goes to one rank only (a Slurm warning may reach ranks at different moments): the
ranks must still agree on one step, save together and all exit. Non-finite losses come from an
absurd learning rate, which overflows the weights within a few updates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from megacpt.training.preemption import PREEMPTED_EXIT_CODE
from tests.helpers import (
    CORPORA,
    REPO,
    read_metrics,
    run_training,
    tiny_config,
    train_losses,
    write_byte_dataset,
)

pytestmark = pytest.mark.multiproc

STEPS = 30


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    return root, write_byte_dataset(root / "en_bytes", CORPORA / "en" / "wikitext2_valid.jsonl")


def _config(data_prefix: str, run_dir: Path) -> dict:
    return tiny_config(
        data_prefix,
        run_dir,
        parallel={"tensor_model_parallel_size": 2},
        training={"train_steps": STEPS, "global_batch_size": 32, "micro_batch_size": 4},
    )


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"RANK=")]
    return ranks[0] if ranks else None


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be signalled"
        if metrics.exists() and any(
            json.loads(line).get("step", 0) >= step for line in metrics.read_text().splitlines() if line
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} never logged")


def _launch(config: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "megacpt.train", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore",
            "MASTER_ADDR": "127.0.0.1",
            **env,
        },
    )


def test_signal_to_one_rank_saves_exits_75_and_resumes_exactly(data):
    root, prefix = data
    expected = train_losses(_config(prefix, root / "uninterrupted"), 2)

    config = _config(prefix, root / "preempted")
    run_dir = Path(config["logging"]["run_dir"])
    run_dir.mkdir(parents=True)
    path = root / "preempted.yaml"
    path.write_text(yaml.safe_dump(config))
    # Launched like srun launches tasks: each rank is its own process with RANK/WORLD_SIZE set.
    port = str(29500 + os.getpid() % 1000)
    procs = [
        _launch(path, {"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "MASTER_PORT": port})
        for r in range(2)
    ]
    _wait_for_step(run_dir, 3, procs[1])
    procs[1].send_signal(signal.SIGUSR1)  # rank 1 only
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [PREEMPTED_EXIT_CODE] * 2, outputs
    assert "preempted by SIGUSR1: checkpoint saved at step" in outputs[0], outputs[0]
    stopped = len(read_metrics(run_dir))
    assert 3 <= stopped < STEPS
    assert (run_dir / "checkpoints" / f"iter_{stopped:07d}").is_dir()

    rerun = run_training(config, 2)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / f'iter_{stopped:07d}'}" in rerun.stdout
    assert [r["loss"] for r in read_metrics(run_dir)] == expected


def test_nonfinite_losses_are_skipped_then_stop_the_run_with_a_clear_error(data):
    root, prefix = data
    config = tiny_config(
        prefix,
        root / "diverges",
        optimizer={"lr": 1e30, "min_lr": 1e30, "warmup_steps": 0},
        training={"train_steps": 10, "exit_on_nonfinite_steps": 3},
        checkpoint={"save_interval": 1},
    )
    run_dir = Path(config["logging"]["run_dir"])
    run_dir.mkdir(parents=True)
    (root / "diverges.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(  # one plain process, as on a laptop: the error is the last thing printed
        [sys.executable, "-m", "megacpt.train", str(root / "diverges.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    records = read_metrics(Path(config["logging"]["run_dir"]))
    last = records[-1]["step"]
    assert f"error: 3 non-finite losses in a row at step {last}; stopping" in result.stderr, result.stderr[
        -3000:
    ]
    assert "Traceback" not in result.stderr, result.stderr
    skipped = [r["skipped_steps"] for r in records]
    assert skipped[-4:] == [0, 1, 2, 3] and [r["loss"] for r in records[-3:]] == [None] * 3, records
    # The run stops before saving the step that tripped it; the last checkpoint is whole and loadable.
    checkpoints = Path(config["logging"]["run_dir"]) / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == f"iter_{last - 1:07d}"
    rerun = run_training(config, 1, overrides=("optimizer.lr=1e-3", "optimizer.min_lr=1e-4"))
    assert f"resumed from {checkpoints / f'iter_{last - 1:07d}'}" in rerun.stdout, rerun.stdout[-2000:]
