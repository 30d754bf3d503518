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

from megacpt.fingerprint import host

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


def mistral_model() -> str:
    import mistral_common

    return str(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1")


def klue_lines(count: int = 600) -> list[str]:
    with open(REPO / "examples" / "corpora" / "ko" / "klue_dev.jsonl", encoding="utf-8") as f:
        return list(itertools.islice(f, count))


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    model = mistral_model()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(klue_lines()), encoding="utf-8")
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


def test_a_run_killed_in_one_process_resumes_under_mpirun_to_identical_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run writes its shards' tokens into one file in plan order, so an unfinished run
    resumes in any number of ranks (rank 0 writes, the others send) to the bytes of one that was
    never interrupted; and a reference-tokenizer run with a pool per rank gives them too."""
    from megacpt.data.preprocess import PreprocessConfig, run, sink

    model = mistral_model()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(klue_lines()), encoding="utf-8")
    record = sink.write_json_atomic
    calls = []

    def killed_at_third_record(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        record(path, data)

    monkeypatch.setattr(sink, "write_json_atomic", killed_at_third_record)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(PreprocessConfig([str(corpus)], str(out), model, shard_bytes=int(0.02 * 2**20), progress=False))
    monkeypatch.undo()
    assert len(list((tmp_path / "out.shards").glob("shard-*.json"))) == 2
    args = ["--no-progress", "--input", str(corpus), "--tokenizer", model, "--shard-mb", "0.02"]
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2"]
    resumed = subprocess.run(
        [*mpirun, sys.executable, str(TOOL), *args, "--output-prefix", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    subprocess.run([sys.executable, str(TOOL), *args, "--output-prefix", str(tmp_path / "one")], check=True)
    pool = ["--tokenizer-backend", "reference", "--workers", "2"]
    pooled = subprocess.run(
        [*mpirun, sys.executable, str(TOOL), *args, *pool, "--output-prefix", str(tmp_path / "pooled")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pooled.returncode == 0, pooled.stdout[-2000:] + pooled.stderr[-2000:]
    for name in ("out", "pooled"):
        for ext in (".bin", ".idx", ".doc_bytes.npy"):
            assert (tmp_path / f"{name}_text_document{ext}").read_bytes() == (
                tmp_path / f"one_text_document{ext}"
            ).read_bytes(), (name, ext)
    assert json.loads((tmp_path / "out.stats.json").read_text())["documents"] == 600


@pytest.mark.parametrize("failing", ["rank 1's shard", "rank 0's shard"])
def test_a_rank_failing_mid_stream_ends_every_rank_with_one_line(tmp_path: Path, failing: str) -> None:
    """A truncated .zst input, read by whichever rank holds its shard after the others have sent
    theirs, fails the run on every rank with its one-line reason: no hang, nothing published."""
    import zstandard

    model = mistral_model()
    lines = klue_lines()
    whole = tmp_path / "a.jsonl"
    whole.write_text("".join(lines[:300]), encoding="utf-8")
    packed = zstandard.ZstdCompressor().compress("".join(lines[300:]).encode())
    cut = tmp_path / "b.jsonl.zst"
    cut.write_bytes(packed[: len(packed) // 2])
    # The .zst is one shard, the last, so rank (shards of a.jsonl) % 2 reads it.
    from megacpt.data import readers

    want = 0 if failing == "rank 0's shard" else 1
    shard_bytes = next(
        b for b in range(8_000, 80_000, 1_000) if len(readers.plan_shards([str(whole)], b)) % 2 == want
    )
    args = ["--no-progress", "--input", str(whole), str(cut), "--tokenizer", model]
    args += ["--shard-mb", str(shard_bytes / 2**20)]
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2"]
    run = subprocess.run(
        [*mpirun, sys.executable, str(TOOL), *args, "--output-prefix", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    plan = json.loads((tmp_path / "o.shards" / "plan.json").read_text())
    owner = (len(plan["shards"]) - 1) % 2
    assert f"rank {owner}'s shard" == failing, "the shard size no longer puts the .zst on that rank"
    assert run.returncode != 0 and "is truncated" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.glob("o_text_document*")) and not (tmp_path / "o.stats.json").exists()


@pytest.mark.parametrize("node_1_sees", ["no file", "another file"])
def test_ranks_that_see_other_inputs_stop_in_one_line(tmp_path: Path, node_1_sees: str) -> None:
    """Each rank reads its input from a folder of its own (as nodes with their own disks would): a
    rank that cannot read it, or finds another file there, stops every rank before any work."""
    lines = klue_lines(200)
    for rank in (0, 1) if node_1_sees == "another file" else (0,):
        (tmp_path / f"node{rank}").mkdir()
        (tmp_path / f"node{rank}" / "c.jsonl").write_text("".join(lines[: 200 - rank]), encoding="utf-8")
    per_rank = f'exec "$@" --input {tmp_path}/node$OMPI_COMM_WORLD_RANK/c.jsonl'
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", "sh", "-c", per_rank, "sh"]
    args = ["--no-progress", "--tokenizer", mistral_model(), "--output-prefix", str(tmp_path / "o")]
    run = subprocess.run(
        [*mpirun, sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0, run.stderr[-2000:]
    if node_1_sees == "no file":  # rank 1 says why, rank 0 says whose
        assert f"error: rank 1: no input file matches {tmp_path}/node1/c.jsonl" in run.stderr
    else:
        assert run.stderr.count(f"disagrees with rank 0 on {host()} about input {tmp_path}/node0") == 2
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.glob("o*"))
