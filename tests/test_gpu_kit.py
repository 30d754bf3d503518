"""The GPU kit's dry run: the same script, tiny models in fp32 on the CPU, writes its report."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def test_the_gpu_kit_runs_on_a_cpu_and_writes_its_report(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run(
        [sys.executable, "bench/gpu/kit.py", "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# GPU figures") and "dry run" in text
    rows = [line for line in text.splitlines() if line.startswith("| SmolLM2") or line.startswith("| Llama")]
    assert len(rows) == 2 and all("failed" not in row for row in rows)
    assert "Transformer Engine: not importable" in text or "Transformer Engine: imports" in text


def test_without_a_gpu_the_real_run_is_refused_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/gpu/kit.py", "--out", str(tmp_path / "gpu.md")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode != 0 and done.stderr.strip().splitlines()[-1].startswith("error: no CUDA device")
    assert not (tmp_path / "gpu.md").exists()
