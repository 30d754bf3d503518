"""tools/preprocess_data.py and megacpt.data.preprocess on the bundled ko/ja/en corpora."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from megacpt.data import doc_bytes, readers
from megacpt.data.indexed import read_documents, read_index
from megacpt.data.preprocess import PreprocessConfig, run
from megacpt.errors import UserError

REPO = Path(__file__).parents[2]
CORPORA = REPO / "examples" / "corpora"
TOOL = REPO / "tools" / "preprocess_data.py"


def mistral_model() -> str:
    import mistral_common

    return str(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1")


def corpus_lines(n_per_file: int = 150) -> list[str]:
    """Korean, Japanese and English lines (English documents are long: a tenth as many)."""
    lines = []
    for name, n in (
        ("ko/klue_dev.jsonl", n_per_file),
        ("ja/jsquad_valid_wiki.jsonl", n_per_file),
        ("en/wikitext2_valid.jsonl", max(1, n_per_file // 10)),
    ):
        with open(CORPORA / name, encoding="utf-8") as f:
            lines += list(itertools.islice(f, n))
    return lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "mixed.jsonl"
    path.write_text("".join(corpus_lines()), encoding="utf-8")
    return path


def megatron_reference(prefix: Path, texts: list[str], model: str, eod: bool) -> None:
    """What Megatron-LM produces: one document at a time into its Python IndexedDatasetBuilder."""
    import torch
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    sp = spm.SentencePieceProcessor(model_file=model)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=DType.optimal_dtype(sp.get_piece_size()))
    for text in texts:
        ids = sp.encode(text) + ([sp.eos_id()] if eod else [])
        builder.add_item(torch.tensor(ids))
        builder.end_document()
    builder.finalize(f"{prefix}.idx")


def same_files(a: str | Path, b: str | Path) -> bool:
    return all(Path(f"{a}{ext}").read_bytes() == Path(f"{b}{ext}").read_bytes() for ext in (".bin", ".idx"))


def tool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOOL), "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd=REPO)


def test_tool_is_byte_identical_to_megatron_builder(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tool(
        "--input",
        str(corpus),
        "--output-prefix",
        str(out),
        "--tokenizer",
        mistral_model(),
        "--append-eod",
        "--workers",
        "2",
        "--shard-mb",
        "0.1",
    )
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    megatron_reference(tmp_path / "ref", texts, mistral_model(), eod=True)
    assert same_files(f"{out}_text_document", tmp_path / "ref")
    stats = json.loads(Path(f"{out}.stats.json").read_text())
    assert stats["documents"] == len(texts) and stats["shards"] > 2 and stats["skipped_total"] == 0
    assert stats["backend"] == "gigatoken"  # and its ids are the reference's: the files are identical
    assert stats["tokens"] == int(read_index(f"{out}_text_document").sequence_lengths.sum())
    assert stats["settings"]["vocab_size"] == 32000 and stats["settings"]["eod_id"] == 2
    assert stats["characters"] == sum(len(t) for t in texts)
    assert stats["bytes"] == sum(len(t.encode()) for t in texts)
    assert not Path(f"{out}.shards").exists()
    sizes = doc_bytes.read(f"{out}_text_document")  # in dataset order, across shard boundaries
    assert sizes is not None and sizes.tolist() == [len(t.encode("utf-8")) for t in texts]


def test_shard_boundaries_never_lose_or_repeat_a_line(corpus: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus_lines(6)) + "\n" + '{"text": "last line, no newline"}', encoding="utf-8")

    def records(path: Path, size: int) -> list[readers.Record]:
        return [
            r
            for s in readers.plan_shards([str(path)], size)
            for r in readers.read_shard(s, ["text"], 1 << 20)
        ]

    for path, sizes in ((small, (1, 2, 7, 97)), (corpus, (4096, 65536))):
        whole = records(path, 1 << 30)
        for size in sizes:
            assert records(path, size) == whole, (path.name, size)
    assert len(records(small, 1 << 30)) == 6 + 6 + 1 + 2  # ko, ja, en lines, a blank line, the last line
    assert len(records(corpus, 1 << 30)) == len(corpus_lines()) == 315


def test_formats_give_the_same_tokens(corpus: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    raw = corpus.read_bytes()
    texts = [json.loads(line)["text"] for line in raw.decode().splitlines()]
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    pq.write_table(pa.table({"text": texts}), tmp_path / "c.parquet", row_group_size=100)
    (tmp_path / "txt").mkdir()
    for i, text in enumerate(texts):
        (tmp_path / "txt" / f"{i:04d}.txt").write_text(text, encoding="utf-8")
    sp = spm.SentencePieceProcessor(model_file=mistral_model())
    want = [sp.encode(t) for t in texts]
    for name, inputs in (
        ("gz", ["c.jsonl.gz"]),
        ("zst", ["c.jsonl.zst"]),
        ("pq", ["c.parquet"]),
        ("txt", ["txt/*.txt"]),
    ):
        cfg = PreprocessConfig(
            [str(tmp_path / i) for i in inputs], str(tmp_path / name), mistral_model(), progress=False
        )
        stats = run(cfg)
        got = [d.tolist() for d in read_documents(tmp_path / f"{name}_text_document")]
        assert got == want, name
        assert stats["documents"] == len(texts)


def test_bad_input_is_counted_and_skipped(tmp_path: Path) -> None:
    good = [json.dumps({"text": t}) for t in ("첫 번째 문서", "二番目の文書", "a third one")]
    lines = [
        good[0].encode(),
        b'{"text": "unterminated',  # malformed JSON
        b'{"body": "no text key"}',  # missing key
        b'{"text": "caf\xe9 latin-1"}',  # invalid UTF-8
        b'{"text": "lone \\ud800 surrogate"}',  # not encodable as UTF-8
        good[1].encode(),
        b'{"text": ""}',  # empty
        b'{"text": "  \\n "}',  # blank text
        b'{"text": 42}',  # not a string
        b"[1, 2]",  # JSON but not an object
        b"",  # blank line
        b'{"text": "' + b"x" * (100 * 1024 * 1024) + b'"}',  # a 100 MB document
        good[2].encode(),
    ]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    tool(
        "--input",
        str(tmp_path / "bad.jsonl"),
        "--output-prefix",
        str(out),
        "--tokenizer",
        mistral_model(),
        "--shard-mb",
        "30",
    )  # shard boundaries fall inside the 100 MB line
    stats = json.loads(Path(f"{out}.stats.json").read_text())
    assert stats["documents"] == 3
    assert stats["skipped"] == {
        "blank_line": 1,
        "empty": 2,
        "invalid_utf8": 2,
        "malformed_json": 2,
        "missing_key": 1,
        "not_a_string": 1,
        "too_long": 1,
    }
    sp = spm.SentencePieceProcessor(model_file=mistral_model())
    want = [sp.encode(json.loads(g)["text"]) for g in good]
    assert [d.tolist() for d in read_documents(f"{out}_text_document")] == want


def test_killed_run_resumes_to_identical_bytes(corpus: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text("".join(corpus_lines(400)) * 2, encoding="utf-8")
    args = ["--input", str(big), "--tokenizer", mistral_model(), "--append-eod", "--shard-mb", "0.1"]
    tool(*args, "--output-prefix", str(tmp_path / "whole"))
    out = tmp_path / "resumed"
    proc = subprocess.Popen(
        [sys.executable, str(TOOL), "--no-progress", *args, "--output-prefix", str(out)], cwd=REPO
    )
    work = Path(f"{out}.shards")
    deadline = time.monotonic() + 60
    while not list(work.glob("shard-*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(work.glob("shard-*.json")))
    total = len(json.loads((work / "plan.json").read_text())["shards"])
    assert 0 < done_before < total, "the run was not killed part-way"
    assert not Path(f"{out}_text_document.idx").exists() and not Path(f"{out}.stats.json").exists()
    tool(*args, "--output-prefix", str(out))
    assert same_files(f"{out}_text_document", f"{tmp_path / 'whole'}_text_document")
    assert json.loads(Path(f"{out}.stats.json").read_text())["documents"] == 2 * len(corpus_lines(400))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("resumed")) == [
        "resumed.stats.json",
        "resumed_text_document.bin",
        "resumed_text_document.doc_bytes.npy",
        "resumed_text_document.idx",
    ]


def test_a_pool_writes_one_token_file_and_a_dead_worker_fails_the_run_in_one_line(
    corpus: Path, tmp_path: Path
) -> None:
    """With a tokenizer that holds the GIL, worker processes encode every other shard and the
    main process writes them in order into one token file: gigatoken's bytes. A worker killed
    mid-run ends the run with one line; the rerun resumes to the same bytes."""
    big = tmp_path / "big.jsonl"
    big.write_text("".join(corpus_lines(400)) * 3, encoding="utf-8")
    args = ["--input", str(big), "--tokenizer", mistral_model(), "--append-eod", "--shard-mb", "0.05"]
    tool(*args, "--output-prefix", str(tmp_path / "one"))
    pooled = [*args, "--tokenizer-backend", "reference", "--workers", "2"]
    out = tmp_path / "pooled"
    proc = subprocess.Popen(
        [sys.executable, str(TOOL), "--no-progress", *pooled, "--output-prefix", str(out)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    work = Path(f"{out}.shards")
    deadline = time.monotonic() + 120
    while not list(work.glob("shard-*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert workers, "no worker processes"
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert "error: preprocessing worker" in stderr and "was killed" in stderr and "Traceback" not in stderr
    assert not Path(f"{out}_text_document.bin").exists()
    assert (work / "merged_text.bin").exists() and not list(work.glob("shard-*_text.bin"))
    tool(*pooled, "--output-prefix", str(out))
    assert same_files(out.with_name("pooled_text_document"), tmp_path / "one_text_document")


def _send_half_a_batch(out) -> None:
    """A worker killed halfway through sending a batch: a header for 1 MiB, then 16 bytes."""
    os.write(out.fileno(), (1 << 20).to_bytes(4, "big") + b"x" * 16)
    os._exit(9)


def test_a_worker_that_dies_halfway_through_a_batch_fails_the_run_instead_of_hanging_it() -> None:
    """A pool worker killed while its batch is half written leaves bytes in the pipe: reading them
    must end (the worker holds the only write end) and say which worker died, in one line."""
    import multiprocessing as mp

    from megacpt.data.preprocess.execute import _receive

    ctx = mp.get_context("spawn")
    read_end, write_end = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=_send_half_a_batch, args=(write_end,), name="megacpt-preprocess-1")
    worker.start()
    write_end.close()
    started = time.monotonic()
    with pytest.raises(UserError, match="worker megacpt-preprocess-1 exited with status 9; rerun"):
        _receive(read_end, worker)
    assert time.monotonic() - started < 30


def test_one_process_run_writes_one_token_file_and_resumes_from_its_last_record(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run in one process writes every shard's tokens into the merged .bin; killed after a shard's
    tokens are written but before its record (stale bytes after them too), or with that file gone,
    a rerun gives the bytes of an uninterrupted run."""
    from megacpt.data.preprocess import sink

    def config(name: str) -> PreprocessConfig:
        return PreprocessConfig(
            [str(corpus)],
            str(tmp_path / name),
            mistral_model(),
            shard_bytes=20_000,
            append_eod=True,
            progress=False,
        )

    whole = run(config("whole"))
    assert whole["shards"] >= 4 and whole["backend"] == "gigatoken"
    record = sink.write_json_atomic
    for damage in ("stale bytes", "no token file"):
        calls = []

        def killed_at_third_record(path, data, calls=calls):
            calls.append(path)
            if len(calls) == 3:
                raise KeyboardInterrupt
            record(path, data)

        monkeypatch.setattr(sink, "write_json_atomic", killed_at_third_record)
        with pytest.raises(KeyboardInterrupt):
            run(config("resumed"))
        monkeypatch.undo()
        work = tmp_path / "resumed.shards"
        tokens = work / "merged_text.bin"
        assert json.loads((work / "plan.json").read_text())["one_token_file"]
        assert len(list(work.glob("shard-*.json"))) == 2 and not list(work.glob("shard-*_text.bin"))
        if damage == "stale bytes":
            with open(tokens, "ab") as f:
                f.write(b"\x01\x02\x03")
        else:
            tokens.unlink()
        resumed = run(config("resumed"))
        for stats in (resumed, whole):
            stats["settings"] = stats["per_key"]["text"]["dataset"] = None
        assert resumed == whole
        assert same_files(tmp_path / "resumed_text_document", tmp_path / "whole_text_document")
        assert not work.exists()
        for path in tmp_path.glob("resumed*"):
            path.unlink()


def test_resume_refuses_changed_settings_and_skips_finished_runs(corpus: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    cfg = PreprocessConfig(
        [str(corpus)], out, mistral_model(), shard_bytes=20_000, keep_shards=True, progress=False
    )
    first = run(cfg)
    mtime = os.stat(f"{out}_text_document.bin").st_mtime_ns
    assert run(cfg) == first and os.stat(f"{out}_text_document.bin").st_mtime_ns == mtime
    os.remove(f"{out}.stats.json")  # as if killed before the end, with every shard done
    other = PreprocessConfig([str(corpus)], out, mistral_model(), append_eod=True, progress=False)
    with pytest.raises(UserError, match="unfinished run with other inputs or settings"):
        run(other)
    assert run(cfg)["documents"] == first["documents"]  # resumed: every shard was done
    finished = Path(f"{out}_text_document.bin").read_bytes()
    with pytest.raises(UserError, match="finished run with other inputs or settings; pass --overwrite"):
        run(other)
    assert Path(f"{out}_text_document.bin").read_bytes() == finished
    replaced = run(dataclasses.replace(other, overwrite=True))
    assert replaced["settings"]["append_eod"] and replaced["tokens"] == first["tokens"] + first["documents"]


def _bpe_tokenizer(tmp_path: Path, texts: list[str], specials: tuple[str, ...] = ("<unk>", "</s>")) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=800, special_tokens=list(specials)))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_hf_tokenizers_file_directory_and_int32_vocabulary(corpus: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    bpe = _bpe_tokenizer(tmp_path, texts)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    reference = Tokenizer.from_file(str(bpe))
    reference.encode_special_tokens = True  # the text's literal "<unk>" and "</s>" are text
    want = [[*e.ids, 1] for e in reference.encode_batch(texts, add_special_tokens=False)]
    with_unk = [ids for text, ids in zip(texts, want) if "<unk>" in text]
    assert with_unk and not any(0 in ids for ids in with_unk)  # id 0 is the special "<unk>"
    for name, path in (("file", bpe), ("dir", tmp_path)):
        stats = run(
            PreprocessConfig([str(corpus)], str(tmp_path / name), str(path), append_eod=True, progress=False)
        )
        assert [d.tolist() for d in read_documents(tmp_path / f"{name}_text_document")] == want
        assert stats["settings"]["eod_id"] == 1 and stats["settings"]["dtype"] == "uint16"
    words = {f"w{i}": i for i in range(70_000)} | {"<unk>": 70_000}
    wide = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    wide.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "wide").mkdir()
    wide.save(str(tmp_path / "wide" / "tokenizer.json"))
    (tmp_path / "w.jsonl").write_text('{"text": "w1 w69999 w65536 nope"}\n')
    stats = run(
        PreprocessConfig(
            [str(tmp_path / "w.jsonl")],
            str(tmp_path / "w"),
            str(tmp_path / "wide" / "tokenizer.json"),
            progress=False,
        )
    )
    assert stats["settings"]["dtype"] == "int32" and stats["settings"]["vocab_size"] == 70_001
    assert read_index(tmp_path / "w_text_document").dtype == np.int32
    assert [d.tolist() for d in read_documents(tmp_path / "w_text_document")] == [[1, 69999, 65536, 70_000]]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "/nonexistent/*.jsonl"], "no input file matches"),
        (["--input", "{corpus}", "--tokenizer", "/nonexistent.model"], "does not exist"),
        (
            ["--input", "{corpus}", "--workers", "0"],
            "argument --workers: expected an integer at least 1, got 0",
        ),
        (["--input", "{corpus}", "--tokenizer", "{bpe}", "--append-eod"], "defines no end-of-sequence token"),
        (["--input", "{csv}"], "cannot tell the format"),
    ],
)
def test_tool_bad_arguments_exit_2_with_one_line(corpus: Path, tmp_path: Path, args, message) -> None:
    texts = ["hello world"] * 5
    bpe = _bpe_tokenizer(tmp_path, texts, ("<unk>",))  # no tokenizer_config.json and no eos-like token
    os.rename(bpe, tmp_path / "plain.json")
    (tmp_path / "t.csv").write_text("text\nhello\n")
    subs = {"{corpus}": str(corpus), "{bpe}": str(tmp_path / "plain.json"), "{csv}": str(tmp_path / "t.csv")}
    argv = [subs.get(a, a) for a in args]
    if "--tokenizer" not in argv:
        argv += ["--tokenizer", mistral_model()]
    res = tool(*argv, "--output-prefix", str(tmp_path / "o"), check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: ") and message in res.stderr
    assert not list(tmp_path.glob("o*"))


def test_hf_directory_reads_its_tokenizer_model_as_every_tool_does(corpus: Path, tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "tokenizer.model").write_bytes(Path(mistral_model()).read_bytes())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    (hf / "tokenizer_config.json").write_text(json.dumps(config))
    lines = corpus_lines(10)  # the English text holds literal "<unk>": text, as the .model encodes it
    small = tmp_path / "small.jsonl"
    small.write_text("".join(lines), encoding="utf-8")
    stats = run(PreprocessConfig([str(small)], str(tmp_path / "o"), str(hf), append_eod=True, progress=False))
    assert stats["settings"]["vocab_size"] == 32000 and stats["settings"]["eod_id"] == 2
    assert "<unk>" in small.read_text() and stats["backend"] in ("gigatoken", "sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=mistral_model())
    want = [[*sp.encode(json.loads(line)["text"]), 2] for line in lines]
    assert [d.tolist() for d in read_documents(tmp_path / "o_text_document")] == want


def test_hf_directory_only_transformers_reads_goes_through_it(tmp_path: Path) -> None:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    hf = tmp_path / "gpt2"
    hf.mkdir()
    chars = bytes_to_unicode()
    vocab = {chars[b]: b for b in range(256)} | {"he": 256, "hel": 257, "<|endoftext|>": 258}
    (hf / "vocab.json").write_text(json.dumps(vocab))
    (hf / "merges.txt").write_text("#version: 0.2\nh e\nhe l\n")
    (hf / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>"})
    )
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"text": "hello <|endoftext|> help"}) + "\n", encoding="utf-8")
    stats = run(PreprocessConfig([str(small)], str(tmp_path / "o"), str(hf), append_eod=True, progress=False))
    assert stats["backend"] == "transformers" and stats["settings"]["eod_id"] == 258
    want = [257, *map(ord, "lo "), *map(ord, "<|endoftext|>"), ord(" "), 257, ord("p"), 258]
    assert [d.tolist() for d in read_documents(tmp_path / "o_text_document")] == [want]


def test_several_json_keys_give_one_aligned_dataset_each(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"title": f"제목 {i}", "text": f"本文 {i} body"} for i in range(7)] + [{"title": "no text"}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    stats = run(
        PreprocessConfig(
            [str(tmp_path / "r.jsonl")],
            str(tmp_path / "o"),
            mistral_model(),
            json_keys=["title", "text"],
            progress=False,
        )
    )
    sp = spm.SentencePieceProcessor(model_file=mistral_model())
    for key in ("title", "text"):
        want = [sp.encode(r[key]) for r in records[:7]]
        assert [d.tolist() for d in read_documents(tmp_path / f"o_{key}_document")] == want
        assert stats["per_key"][key]["tokens"] == sum(map(len, want))
    assert stats["documents"] == 7 and stats["skipped"] == {"missing_key": 1}
    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"no document written: every line was skipped \(missing_key: 2\)"):
        run(
            PreprocessConfig(
                [str(tmp_path / "p.parquet")], str(tmp_path / "p"), mistral_model(), progress=False
            )
        )
    assert not list(tmp_path.glob("p_*"))
