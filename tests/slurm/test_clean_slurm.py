"""``megacpt clean --executor slurm`` on the local test cluster: datatrove submits every stage as a
job array, several tasks each, and the published output equals the local executor's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import CORPORA
from tests.slurm.local_cluster import Cluster, local_cluster

pytestmark = [pytest.mark.multiproc, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from local_cluster(tmp_path_factory)


def _corpus(folder: Path) -> Path:
    """Korean and Japanese text with exact and near copies of earlier documents further on."""
    folder.mkdir()
    ko = (CORPORA / "ko" / "klue_dev.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    ja = (CORPORA / "ja" / "jsts_jcqa_train.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    copies = []
    for i, line in enumerate(ko[:40]):
        doc = json.loads(line)
        if i % 2:
            doc["text"] = doc["text"][:-3] + "였다."
        copies.append(json.dumps(doc, ensure_ascii=False))
    (folder / "a.jsonl").write_text("\n".join(ko) + "\n", encoding="utf-8")
    (folder / "b.jsonl").write_text("\n".join(ja + copies) + "\n", encoding="utf-8")
    return folder


def _clean(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "megacpt.cli", "clean", *args, "--lang", "ko", "--lang", "ja"]
    return subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=120)


def test_slurm_executor_gives_the_local_output(cluster: Cluster, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "raw")
    local = _clean(cluster, str(corpus), str(tmp_path / "local.jsonl"), "--workers", "2")
    assert local.returncode == 0, local.stderr
    out = tmp_path / "slurm"
    submitted = _clean(cluster, str(corpus), f"{out}/", "--executor", "slurm", "--partition", "local",
                       "--tasks", "3", "--workers", "3", "--slurm-time", "00:10:00")  # fmt: skip
    assert submitted.returncode == 0 and "submitted the cleaning jobs" in submitted.stdout, submitted.stderr
    work = tmp_path / ".slurm.clean-work"
    deadline = time.monotonic() + 300
    while not (out / "report.json").exists():
        logs = "\n".join(p.read_text()[-2000:] for p in sorted((work / "slurm").rglob("*.out")))
        assert time.monotonic() < deadline, f"no output after 300 s; job logs:\n{logs}"
        assert "Traceback" not in logs, logs
        time.sleep(2)
    shards = sorted(out.glob("part-*.jsonl"))
    assert len(shards) == 3  # one per task, each holding documents
    assert b"".join(p.read_bytes() for p in shards) == (tmp_path / "local.jsonl").read_bytes()
    report = json.loads((out / "report.json").read_text())
    assert (
        report["removed"]["exact_duplicate"]["count"] == 20
        and report["removed"]["near_duplicate"]["count"] == 20
    )
    assert report["removed"] == json.loads((tmp_path / "local.jsonl.report.json").read_text())["removed"]
    stages = sorted(p.name for p in (work / "logs").iterdir() if p.is_dir())
    assert stages == ["buckets", "clean", "clusters", "dedup", "publish"]
    assert len(list((work / "logs" / "clean" / "completions").iterdir())) == 3
