"""The ranks of a job check at rendezvous that they run the same code, config and data files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from megacpt.config import load_config
from megacpt.fingerprint import EDGE_BYTES, describe_files, disagreement
from megacpt.parallel.runtime import job_description
from tests.helpers import CORPORA, REPO, tiny_config, write_byte_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    return write_byte_dataset(tmp_path_factory.mktemp("data") / "ko", CORPORA / "ko" / "klue_dev.jsonl", 200)


def test_disagreement_names_the_first_rank_and_part_that_differ():
    same = {"config: training.seed": "1", "file a.idx": "size 10 sha256 ab"}
    assert disagreement([("n1", same), ("n1", dict(same))]) is None
    other = dict(same, **{"file a.idx": "unreadable (No such file or directory)"})
    assert disagreement([("n1", same), ("n1", same), ("n2", other)]) == (
        "rank 2 on n2 disagrees with rank 0 on n1 about file a.idx: "
        "it has unreadable (No such file or directory), rank 0 has size 10 sha256 ab"
    )
    assert "about extra: it has 1, rank 0 has nothing" in str(
        disagreement([("n1", same), ("n1", dict(same, extra="1"))])
    )


def test_a_file_is_known_by_its_size_and_both_ends(tmp_path):
    path = tmp_path / "x.bin"
    body = bytearray(os.urandom(3 * EDGE_BYTES))
    path.write_bytes(body)
    first = describe_files([path])[str(path)]
    body[-1] ^= 1  # a stale copy whose last block differs
    path.write_bytes(body)
    assert describe_files([path])[str(path)] != first
    assert describe_files([tmp_path / "gone.bin"])[str(tmp_path / "gone.bin")].startswith("unreadable")


def test_the_job_description_covers_config_and_every_data_file(tmp_path, dataset):
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(dataset, tmp_path / "run")))
    described = job_description(load_config(config_path))
    assert described["config: training.seed"] == "1234"
    assert described["code: megacpt source"].startswith("sha256 ")
    copy = tmp_path / "copy"
    for suffix in (".bin", ".idx"):
        shutil.copy(dataset + suffix, str(copy) + suffix)
    with open(str(copy) + ".bin", "ab") as f:  # another node's copy of the data, one token longer
        f.write(b"\0\0")
    moved = job_description(load_config(config_path, [f"data.datasets=[{{prefix: {copy}, weight: 1}}]"]))
    assert moved[f"file {copy}.bin"] != described[f"file {dataset}.bin"]
    assert moved[f"file {copy}.idx"] == described[f"file {dataset}.idx"]


@pytest.mark.multiproc
def test_ranks_with_different_configs_stop_in_one_line(tmp_path, dataset):
    """Rank 1 runs with another seed (as a node given other overrides would): every rank refuses."""
    config = tiny_config(dataset, tmp_path / "run")
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    wrapper = tmp_path / "node.py"
    wrapper.write_text(
        "import os, sys\nfrom megacpt.train import main\n"
        "extra = ['training.seed=7'] if os.environ['RANK'] == '1' else []\n"
        "sys.exit(main(sys.argv[1:] + extra))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            "--standalone",
            wrapper,
            config_path,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO)),
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and errors[0] == errors[1], result.stderr[-3000:]
    assert "rank 1 on" in errors[0] and "about config: training.seed: it has 7, rank 0 has 1234" in errors[0]
    assert not (Path(config["logging"]["run_dir"]) / "checkpoints").exists()
