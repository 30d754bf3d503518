"""``mpirun -n 2 tools/preprocess_data.py``: ranks split the shards and produce the single-process bytes."""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
TOOL = REPO / "tools" / "preprocess_data.py"

pytestmark = [
    pytest.mark.multiproc,
    pytest.mark.skipif(
        shutil.which("mpirun") is None, reason="no mpirun (scripts/test-deps.sh installs openmpi-bin)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("mpi4py") is None, reason="mpi4py missing (pip install 'megacpt[mpi]')"
    ),
]


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    import mistral_common

    model = str(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1")
    corpus = tmp_path / "c.jsonl"
    with open(REPO / "examples" / "corpora" / "ko" / "klue_dev.jsonl", encoding="utf-8") as f:
        corpus.write_text("".join(itertools.islice(f, 600)), encoding="utf-8")
    args = [
        "--no-progress",
        "--input",
        str(corpus),
        "--tokenizer",
        model,
        "--append-eod",
        "--shard-mb",
        "0.02",
    ]
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2"]
    run = subprocess.run(
        [*mpirun, sys.executable, str(TOOL), *args, "--output-prefix", str(tmp_path / "mpi")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    subprocess.run([sys.executable, str(TOOL), *args, "--output-prefix", str(tmp_path / "one")], check=True)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"mpi_text_document{ext}").read_bytes() == (
            tmp_path / f"one_text_document{ext}"
        ).read_bytes()
    mpi, one = (json.loads((tmp_path / f"{n}.stats.json").read_text()) for n in ("mpi", "one"))
    assert (mpi["ranks"], one["ranks"]) == (2, 1) and mpi["shards"] >= 4
    for stats in (mpi, one):
        del stats["ranks"], stats["per_key"]["text"]["dataset"]
    assert mpi == one
    assert not (tmp_path / "mpi.shards").exists()


def test_a_failing_rank_fails_the_run_cleanly(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "x"}\n')
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2"]
    run = subprocess.run(
        [
            *mpirun,
            sys.executable,
            str(TOOL),
            "--no-progress",
            "--input",
            str(corpus),
            "--tokenizer",
            str(tmp_path / "missing.model"),
            "--output-prefix",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "error: tokenizer" in run.stderr
    assert not list(tmp_path.glob("o*"))
