"""The C++ indexed-dataset writer against a plain-NumPy reference and Megatron-core's own builder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from megacpt.data.indexed import IndexedWriter, merge, optimal_dtype, read_documents, read_index
from megacpt.errors import UserError

HERE = Path(__file__).parent
CSRC = HERE.parents[1] / "csrc"


def numpy_reference(prefix: Path, docs: list[np.ndarray], dtype: type[np.integer]) -> None:
    """The .bin/.idx format written from its specification with NumPy (one sequence per document)."""
    lengths = np.array([d.size for d in docs], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(lengths.astype(np.int64) * np.dtype(dtype).itemsize)[:-1]])
    code = {np.uint16: 8, np.int32: 4}[dtype]
    header = b"MMIDIDX\x00\x00" + np.array([1], "<u8").tobytes() + bytes([code])
    counts = np.array([len(docs), len(docs) + 1], "<u8").tobytes()
    doc_idx = np.arange(len(docs) + 1, dtype=np.int64)
    with open(f"{prefix}.idx", "wb") as f:
        f.write(header + counts + lengths.tobytes() + pointers.astype(np.int64).tobytes() + doc_idx.tobytes())
    with open(f"{prefix}.bin", "wb") as f:
        for d in docs:
            f.write(d.astype(dtype).tobytes())


def random_docs(seed: int, count: int, high: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, high, rng.integers(0, 300)) for _ in range(count)]


def same_files(a: Path | str, b: Path | str) -> bool:
    return all(Path(f"{a}{ext}").read_bytes() == Path(f"{b}{ext}").read_bytes() for ext in (".bin", ".idx"))


def megatron_build(prefix: Path, docs: list[np.ndarray], dtype: type[np.integer]) -> None:
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for d in docs:
        builder.add_item(torch.from_numpy(d))
        builder.end_document()
    builder.finalize(f"{prefix}.idx")


@pytest.mark.parametrize("dtype,high", [(np.uint16, 65535), (np.int32, 200_000)])
def test_writer_matches_numpy_reference_and_megatron(tmp_path: Path, dtype, high) -> None:
    docs = [*random_docs(0, 400, high), np.zeros(0, np.int64)]  # an empty document too
    numpy_reference(tmp_path / "ref", docs, dtype)
    megatron_build(tmp_path / "meg", docs, dtype)
    with IndexedWriter(tmp_path / "ours", dtype) as w:
        for d in docs[:100]:
            w.add_document(d)
        w.add_documents(np.concatenate(docs[100:200]), np.array([d.size for d in docs[100:200]]))
        w.add_lists([d.tolist() for d in docs[200:]])
        assert (w.documents, w.tokens) == (len(docs), sum(d.size for d in docs))
    assert same_files(tmp_path / "ours", tmp_path / "ref")
    assert same_files(tmp_path / "ours", tmp_path / "meg")
    assert all(np.array_equal(a, b) for a, b in zip(read_documents(tmp_path / "ours"), docs, strict=True))
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"{p}.{e}" for p in ("ours", "ref", "meg") for e in ("bin", "idx")
    )


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_every_input_path_crosses_the_write_buffer(tmp_path: Path, dtype) -> None:
    """12+ MB of tokens (the writer buffers 4 MiB), a document longer than the buffer, every
    input dtype of add_documents and more ids than add_lists stages at once, with an eod."""
    rng = np.random.default_rng(8)
    docs = [
        *random_docs(9, 20_000, 30_000),
        rng.integers(0, 30_000, 2_200_000),
        *random_docs(10, 9_000, 30_000),
    ]
    numpy_reference(tmp_path / "ref", [np.append(d, 3) for d in docs], dtype)
    flat = np.concatenate(docs)
    lengths = np.array([d.size for d in docs])
    for input_dtype in (np.int64, np.int32, np.uint32, np.uint16, np.int16):
        with IndexedWriter(tmp_path / "ours", dtype) as w:
            w.add_documents(flat.astype(input_dtype), lengths, eod=3)
        assert same_files(tmp_path / "ours", tmp_path / "ref"), input_dtype
    with IndexedWriter(tmp_path / "ours", dtype) as w:
        strided = np.repeat(flat[: lengths[:5000].sum()], 2)[::2]
        assert not strided.flags.c_contiguous
        w.add_documents(strided, lengths[:5000], eod=3)  # copied first
        w.add_lists([d.tolist() for d in docs[5000:]], eod=3)
    assert same_files(tmp_path / "ours", tmp_path / "ref")


@pytest.mark.parametrize("long_document", [False, True])
def test_a_bad_token_keeps_the_documents_before_it(tmp_path: Path, long_document: bool) -> None:
    bad = np.full(3_000_000 if long_document else 50, 7)
    bad[-1] = 70_000
    docs = random_docs(11, 30, 1000)
    with IndexedWriter(tmp_path / "ours", np.uint16) as w:
        w.add_documents(np.concatenate(docs[:10]), np.array([d.size for d in docs[:10]]))
        with pytest.raises(UserError, match="token id 70000 does not fit"):
            w.add_documents(
                np.concatenate([*docs[10:20], bad, docs[20]]),
                np.array([*(d.size for d in docs[10:20]), bad.size, docs[20].size]),
            )
        with pytest.raises(UserError, match="token id -1 does not fit"):
            w.add_lists([docs[20].tolist(), [5, -1], docs[21].tolist()])
        w.add_lists([d.tolist() for d in docs[21:]])
    numpy_reference(tmp_path / "ref", docs, np.uint16)
    assert same_files(tmp_path / "ours", tmp_path / "ref")


def test_a_refused_append_leaves_the_writer_as_it_was(tmp_path: Path) -> None:
    docs = random_docs(12, 40, 1000)
    with IndexedWriter(tmp_path / "part", np.uint16) as w:
        w.add_documents(np.concatenate(docs[10:]), np.array([d.size for d in docs[10:]]))
    shutil.copy(tmp_path / "part.idx", tmp_path / "short.idx")
    (tmp_path / "short.bin").write_bytes((tmp_path / "part.bin").read_bytes()[:-2])
    with IndexedWriter(tmp_path / "ours", np.uint16) as w:
        w.add_lists([d.tolist() for d in docs[:10]])
        with pytest.raises(UserError, match="size does not match"):
            w.append(tmp_path / "short")
        w.append(tmp_path / "part")
    numpy_reference(tmp_path / "ref", docs, np.uint16)
    assert same_files(tmp_path / "ours", tmp_path / "ref")


def test_add_lists_reads_any_python_int(tmp_path: Path) -> None:
    """Small ints, ints of two CPython digits, NumPy integers and bools; anything else is refused."""
    docs = [[0, 1, 2**30 - 1, 2**30, 2**31 - 1], [np.int64(7), np.uint16(9), True], []]
    with IndexedWriter(tmp_path / "ours", np.int32) as w:
        w.add_lists(docs)
        with pytest.raises(TypeError, match="'str' object cannot be interpreted as an integer"):
            w.add_lists([[1, "2"]])
        with pytest.raises(UserError, match="list of token ids"):
            w.add_lists([(1, 2)])  # type: ignore[list-item]
        with pytest.raises(UserError, match="integer array"):
            w.add_documents(np.array([1.0]), np.array([1]))
    numpy_reference(tmp_path / "ref", [np.array(d, dtype=np.int64) for d in docs], np.int32)
    assert same_files(tmp_path / "ours", tmp_path / "ref")


def test_eod_is_appended_to_each_document(tmp_path: Path) -> None:
    docs = random_docs(1, 20, 1000)
    with IndexedWriter(tmp_path / "ours", np.uint16) as w:
        w.add_lists([d.tolist() for d in docs], eod=2)
    numpy_reference(tmp_path / "ref", [np.append(d, 2) for d in docs], np.uint16)
    assert same_files(tmp_path / "ours", tmp_path / "ref")


def test_merge_matches_megatron_add_index(tmp_path: Path) -> None:
    import torch  # noqa: F401  (Megatron's builder imports it)
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    parts = [random_docs(seed, n, 32000) for seed, n in ((2, 50), (3, 0), (4, 70))]
    for i, docs in enumerate(parts):
        with IndexedWriter(tmp_path / f"part{i}", np.uint16) as w:
            for d in docs:
                w.add_document(d)
    merge(tmp_path / "merged", [tmp_path / f"part{i}" for i in range(3)])
    builder = IndexedDatasetBuilder(str(tmp_path / "meg.bin"), dtype=np.uint16)
    for i in range(3):
        builder.add_index(str(tmp_path / f"part{i}"))
    builder.finalize(str(tmp_path / "meg.idx"))
    assert same_files(tmp_path / "merged", tmp_path / "meg")
    numpy_reference(tmp_path / "ref", [d for docs in parts for d in docs], np.uint16)
    assert same_files(tmp_path / "merged", tmp_path / "ref")


def test_datasets_in_one_token_file_merge_to_the_copied_bytes(tmp_path: Path) -> None:
    """Writers given one token file (each from where the last one ended) and an index-only merge
    give the bytes of separate datasets merged by copying; what follows a writer's offset is
    dropped, an aborted writer cuts the file back, and a file that lost tokens is refused."""
    parts = [random_docs(seed, n, 32000) for seed, n in ((6, 40), (7, 0), (8, 55))]
    tokens = tmp_path / "one.bin"
    tokens.write_bytes(b"stale bytes of a killed writer")
    at = 0
    for i, docs in enumerate(parts):
        with IndexedWriter(tmp_path / f"sep{i}", np.uint16) as w:
            for d in docs:
                w.add_document(d, eod=2)
        with IndexedWriter(tmp_path / f"part{i}", np.uint16, tokens, at) as w:
            for d in docs:
                w.add_document(d, eod=2)
        at += 2 * sum(d.size + 1 for d in docs)
        assert tokens.stat().st_size == at and not (tmp_path / f"part{i}.bin").exists()
    with (
        pytest.raises(RuntimeError, match="boom"),
        IndexedWriter(tmp_path / "killed", np.uint16, tokens, at) as w,
    ):
        w.add_document([5, 6, 7])
        raise RuntimeError("boom")
    assert tokens.stat().st_size == at and not list(tmp_path.glob("killed*"))
    merge(tmp_path / "copied", [tmp_path / f"sep{i}" for i in range(3)])
    merge(tmp_path / "one", [tmp_path / f"part{i}" for i in range(3)], tokens_in_place=True)
    assert same_files(tmp_path / "one", tmp_path / "copied")
    with pytest.raises(UserError, match="fewer than"):
        IndexedWriter(tmp_path / "late", np.uint16, tokens, at + 2)
    with open(tokens, "ab") as f:
        f.write(b"xx")
    with pytest.raises(
        UserError, match=f"holds {at + 2:,} bytes but the datasets written into it hold {at:,}"
    ):
        merge(tmp_path / "one", [tmp_path / f"part{i}" for i in range(3)], tokens_in_place=True)
    with (
        pytest.raises(UserError, match="needs a writer given its token file"),
        IndexedWriter(tmp_path / "x", np.uint16) as w,
    ):
        w.append(tmp_path / "part0", tokens_in_place=True)


def test_megatron_reads_our_datasets(tmp_path: Path) -> None:
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import Split

    class Ids:  # what GPTDataset reads from a tokenizer
        eod, pad, vocab_size = 0, 1, 70_000
        unique_identifiers: ClassVar[dict[str, str]] = {"class": "Ids"}

    docs = [np.append(d + 2, 0) for d in random_docs(5, 60, 69_000)]  # eod-terminated, int32 vocabulary
    with IndexedWriter(tmp_path / "ds", optimal_dtype(70_000)) as w:
        for d in docs:
            w.add_document(d)
    indexed = IndexedDataset(str(tmp_path / "ds"))
    assert indexed.index.dtype == np.int32 and len(indexed) == len(docs)
    assert all(np.array_equal(indexed[i], d) for i, d in enumerate(docs))
    config = GPTDatasetConfig(
        random_seed=1,
        sequence_length=32,
        blend=([str(tmp_path / "ds")], None),
        split="100,0,0",
        tokenizer=Ids(),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        path_to_cache=str(tmp_path / "cache"),
    )
    gpt = GPTDataset(
        indexed, str(tmp_path / "ds"), np.arange(len(docs), dtype=np.int32), None, Split.train, config
    )
    stream = np.concatenate([d for d in docs])
    sample = gpt[0]
    window = np.concatenate([sample["tokens"].numpy(), sample["labels"].numpy()[-1:]])
    hits = [i for i in range(stream.size - 32) if np.array_equal(stream[i : i + 33], window)]
    assert hits, "a GPTDataset sample is not a window of the documents we wrote"


def test_failures_leave_no_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not fit"), IndexedWriter(tmp_path / "a", np.uint16) as w:
        w.add_document([1, 2, 3])
        w.add_document([70_000])
    with pytest.raises(RuntimeError, match="boom"), IndexedWriter(tmp_path / "b", np.int32) as w:
        w.add_document([1, 2, 3])
        raise RuntimeError("boom")
    with (
        pytest.raises(UserError, match="sum to the token count"),
        IndexedWriter(tmp_path / "c", np.int32) as w,
    ):
        w.add_documents(np.arange(5), np.array([2, 2]))
    with IndexedWriter(tmp_path / "u16", np.uint16) as w:
        w.add_document([1])
    with IndexedWriter(tmp_path / "i32", np.int32) as w:
        w.add_document([1])
    with pytest.raises(UserError, match="dtype code"):
        merge(tmp_path / "mixed", [tmp_path / "u16", tmp_path / "i32"])
    with pytest.raises(UserError, match="does not exist"):
        merge(tmp_path / "missing", [tmp_path / "nope"])
    (tmp_path / "trunc.idx").write_bytes((tmp_path / "u16.idx").read_bytes()[:-3])
    (tmp_path / "trunc.bin").write_bytes(b"")
    with pytest.raises(UserError, match="truncated"):
        merge(tmp_path / "bad", [tmp_path / "u16", tmp_path / "trunc"])
    assert sorted(os.listdir(tmp_path)) == [
        "i32.bin",
        "i32.idx",
        "trunc.bin",
        "trunc.idx",
        "u16.bin",
        "u16.idx",
    ]


def test_writer_memory_is_flat(tmp_path: Path) -> None:
    """4M documents: Megatron's Python builder would hold ~0.3 GB of index lists; ours spills them."""
    script = textwrap.dedent(
        f"""
        import resource, numpy as np
        from megacpt.data.indexed import IndexedWriter
        tokens = np.arange(8 * 1000, dtype=np.int64) % 30000
        lengths = np.full(1000, 8, dtype=np.int64)
        with IndexedWriter({str(tmp_path / "big")!r}, np.uint16) as w:
            w.add_documents(tokens, lengths)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            for _ in range(4000):
                w.add_documents(tokens, lengths)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert int(out.stdout.split()[-1]) < 40, f"peak memory grew by {out.stdout.split()[-1]} MiB"
    index = read_index(tmp_path / "big")
    assert index.document_indices.size == 4_001_001 and index.sequence_pointers[-1] == (4_001_000 - 1) * 16


@pytest.mark.skipif(
    shutil.which("g++") is None, reason="no C++ compiler to build the AddressSanitizer driver"
)
@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_core_under_address_sanitizer(tmp_path: Path, dtype) -> None:
    exe = tmp_path / "asan_driver"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
            f"-I{CSRC}",
            str(HERE / "asan_driver.cpp"),
            "-o",
            str(exe),
        ],
        check=True,
    )
    high = 65535 if dtype == np.uint16 else 2**31 - 1
    # more than the writer's 4 MiB buffer, and one document longer than it on its own
    docs = [*random_docs(6, 20_000, high), np.random.default_rng(7).integers(0, high, 2_200_000)]
    (tmp_path / "tokens").write_bytes(np.concatenate(docs).astype(np.int64).tobytes())
    (tmp_path / "lengths").write_bytes(np.array([d.size for d in docs], np.int64).tobytes())
    code = {np.uint16: "8", np.int32: "4"}[dtype]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    run = subprocess.run(
        [str(exe), str(tmp_path / "tokens"), str(tmp_path / "lengths"), str(tmp_path / "ds"), code],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
    numpy_reference(tmp_path / "ref", docs, dtype)
    assert same_files(tmp_path / "ds", tmp_path / "ref")
    assert same_files(tmp_path / "ds_merged", tmp_path / "ref")
    assert same_files(tmp_path / "ds_one", tmp_path / "ref")
