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


def test_a_one_process_run_is_not_resumed_by_several_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unfinished run planned for one process (its shards' tokens in one file, in order) is
    refused under mpirun with a one-line reason, and still resumes in one process."""
    import mistral_common

    from megacpt.data import shards
    from megacpt.data.preprocess import PreprocessConfig, run

    model = str(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1")
    corpus = tmp_path / "c.jsonl"
    with open(REPO / "examples" / "corpora" / "ko" / "klue_dev.jsonl", encoding="utf-8") as f:
        corpus.write_text("".join(itertools.islice(f, 600)), encoding="utf-8")
    record = shards.write_json_atomic
    calls = []

    def killed_at_second_record(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        record(path, data)

    monkeypatch.setattr(shards, "write_json_atomic", killed_at_second_record)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(PreprocessConfig([str(corpus)], str(out), model, shard_bytes=int(0.02 * 2**20), progress=False))
    monkeypatch.undo()
    args = ["--no-progress", "--input", str(corpus), "--tokenizer", model, "--shard-mb", "0.02"]
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2"]
    refused = subprocess.run(
        [*mpirun, sys.executable, str(TOOL), *args, "--output-prefix", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0 and "planned for one process; rerun it without mpirun" in refused.stderr
    assert not (tmp_path / "out_text_document.bin").exists()
    subprocess.run([sys.executable, str(TOOL), *args, "--output-prefix", str(out)], check=True)
    assert json.loads((tmp_path / "out.stats.json").read_text())["documents"] == 600
