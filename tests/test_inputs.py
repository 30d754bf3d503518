"""Compressed inputs: every tool that reads text reads ``.gz`` and ``.zst``, and a truncated or corrupt
file is one error naming it, never a shorter corpus with exit 0."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from megacpt.cli import main
from megacpt.errors import UserError
from megacpt.inputs import open_binary, read_json
from megacpt.recipes.quickstart import mistral_tokenizer_model
from megacpt.tokenizer.corpus import iter_texts
from tests.helpers import CORPORA

DOCS = list(iter_texts([CORPORA / "ko" / "klue_dev.jsonl"]))[:400]
JSONL = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in DOCS).encode()


def _files(tmp_path: Path) -> dict[str, Path]:
    c = zstandard.ZstdCompressor()
    z, g = c.compress(JSONL), gzip.compress(JSONL)
    half = len(JSONL) // 2
    data = {
        "whole.jsonl.zst": z,
        "frames.jsonl.zst": c.compress(JSONL[: half - 5]) + c.compress(JSONL[half - 5 :]),
        "whole.jsonl.gz": g,
        "cut.jsonl.zst": z[: len(z) // 2],
        "cut.jsonl.gz": g[: len(g) // 2],
        "garbage.jsonl.zst": b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 4,
        "garbage.jsonl.gz": b"\x1f\x8b" + bytes(range(256)) * 4,
    }
    paths = {}
    for name, blob in data.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(blob)
    return paths


def test_whole_files_read_back_exactly(tmp_path: Path) -> None:
    files = _files(tmp_path)
    for name in ("whole.jsonl.zst", "frames.jsonl.zst", "whole.jsonl.gz"):
        with open_binary(files[name]) as f:
            assert f.read() == JSONL, name
        assert list(iter_texts([files[name]])) == DOCS


@pytest.mark.parametrize(
    "name, message",
    [
        ("cut.jsonl.zst", "is truncated"),
        ("cut.jsonl.gz", "is truncated"),
        ("garbage.jsonl.zst", "is corrupt: not a valid zstd stream"),
        ("garbage.jsonl.gz", "is corrupt: not a valid gzip stream"),
    ],
)
def test_a_cut_or_corrupt_file_is_an_error_naming_it(tmp_path: Path, name: str, message: str) -> None:
    path = _files(tmp_path)[name]
    with pytest.raises(UserError, match=f"^{path} {message}"):
        list(iter_texts([path]))


def test_a_directory_or_undecodable_text_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a directory, not a file"):
        list(iter_texts([tmp_path]))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"latin1.jsonl:2: not UTF-8 text"):
        list(iter_texts([bad]))


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit, match="^2$"):
        main(argv)
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("name", ["cut.jsonl.zst", "cut.jsonl.gz"])
def test_every_reading_verb_refuses_a_truncated_file(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _files(tmp_path)[name]
    runs = {
        "preprocess": ["preprocess", "--input", str(path), "--output-prefix", str(tmp_path / "ds"), "--tokenizer",
                       str(mistral_tokenizer_model()), "--no-progress"],
        "clean": ["clean", str(path), str(tmp_path / "clean.jsonl")],
        "expand": ["expand", "--base", str(tmp_path / "nowhere"), "--corpus", str(path), "--output", str(tmp_path / "t")],
    }  # fmt: skip
    for verb, argv in runs.items():
        line = _error(argv, capsys)
        if verb == "expand":  # its base is checked first; the corpus is read by iter_texts (above)
            assert line == f"error: {tmp_path / 'nowhere'}: no such file or directory"
            continue
        assert line == f"error: {path} is truncated: its compressed stream ends early", verb
    assert sorted(p.name for p in tmp_path.iterdir() if "clean" in p.name or p.name.startswith("ds_")) == []


def test_clean_reads_gzip(tmp_path: Path) -> None:
    path = _files(tmp_path)["whole.jsonl.gz"]
    main(["clean", str(path), str(tmp_path / "clean.jsonl"), "--workers", "1"])
    report = json.loads((tmp_path / "clean.jsonl.report.json").read_text())
    assert report["documents_in"] == len(DOCS)


def test_a_json_file_that_is_broken_or_lacks_a_field_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import save_file

    model = tmp_path / "model"
    model.mkdir()
    save_file({"model.norm.weight": torch.ones(4)}, str(model / "model.safetensors"))
    config = {
        "model_type": "llama",
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "max_position_embeddings": 8,
    }
    (model / "config.json").write_text(json.dumps(config))
    argv = ["convert", "hf-to-megatron", "--input", str(model), "--output", str(tmp_path / "out")]
    assert _error(argv, capsys) == f"error: {model / 'config.json'} has no 'hidden_size' field"
    (model / "config.json").write_text('{"model_type": ')
    assert (
        _error(argv, capsys) == f"error: {model / 'config.json'} is not valid JSON: Expecting value (line 1)"
    )
    (model / "model.safetensors.index.json").write_text("[1, 2")
    with pytest.raises(UserError, match="index.json is not valid JSON"):
        read_json(model / "model.safetensors.index.json")
    assert not (tmp_path / "out").exists()
