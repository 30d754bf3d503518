"""Nothing a user wrote is lost to an output path: every verb refuses, before any work, an output that
is or contains one of its inputs, and ``--overwrite`` replaces only megacpt's own output of that kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megacpt.atomic import CHECKPOINT, HF_MODEL, OUTPUT_MARKER, TOKENIZER, atomic_directory, check_output
from megacpt.cli import main
from megacpt.errors import UserError


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _corpus(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": f"안녕하세요 문서 {i}"}) + "\n" for i in range(20)))
    return path


def _nest(tmp_path: Path) -> Path:
    """A user's folder: a checkpoint-like input, a tokenizer, a corpus and their notes."""
    nest = tmp_path / "nest"
    (nest / "ck").mkdir(parents=True)
    (nest / "ck" / "megacpt.json").write_text("{}")
    (nest / "tok").mkdir()
    (nest / "tok" / "tokenizer.json").write_text("{}")
    _corpus(nest / "corpus.jsonl")
    (nest / "notes.txt").write_text("my notes")
    return nest


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit, match="^2$"):
        main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: "), lines
    return lines[-1]


CASES = {
    "convert megatron-to-hf": ["convert", "megatron-to-hf", "--input", "{n}/ck", "--output", "{n}"],
    "convert hf-to-megatron": ["convert", "hf-to-megatron", "--input", "{n}/ck", "--output", "{n}"],
    "convert gguf-to-hf": ["convert", "gguf-to-hf", "--input", "{n}/notes.txt", "--output", "{n}"],
    "resize": [
        "resize", "--input", "{n}/ck", "--output", "{n}", "--base-tokenizer", "{n}/tok", "--tokenizer", "{n}/tok",
    ],
    "resize (the tokenizer inside)": [
        "resize", "--input", "{t}", "--output", "{n}", "--base-tokenizer", "{n}/tok", "--tokenizer", "{n}/tok",
    ],
    "expand (output is the base)": ["expand", "--base", "{n}/tok", "--corpus", "{n}/corpus.jsonl", "--output", "{n}/tok"],
    "expand (output holds the corpus)": [
        "expand", "--base", "{n}/tok", "--corpus", "{n}/corpus.jsonl", "--output", "{n}",
    ],
    "clean": ["clean", "{n}/corpus.jsonl", "{n}/corpus.jsonl"],
    "generate": ["generate", "--model", "{n}/ck", "--prompts", "{n}/corpus.jsonl", "--output", "{n}/corpus.jsonl"],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_output_that_is_or_holds_an_input_is_refused(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nest = _nest(tmp_path)
    (tmp_path / "model").mkdir()
    (nest / "ck" / "config.json").write_text("{}")  # generate's model check passes
    before = _tree(nest)
    argv = [a.format(n=nest, t=tmp_path / "model") for a in CASES[case]] + ["--overwrite"]
    line = _refused(argv, capsys)
    assert "is or contains the input" in line
    assert _tree(nest) == before


def test_overwrite_replaces_only_megacpt_s_own_output_of_that_kind(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match=f"is not an output of megacpt \\(it has no {OUTPUT_MARKER}\\)"):
        check_output(mine, [], overwrite=True, kind=HF_MODEL)
    with (
        pytest.raises(UserError, match="is not an output of megacpt"),
        atomic_directory(mine, HF_MODEL, replace=True),
    ):
        pass
    assert (mine / "notes.txt").read_text() == "keep"

    out = tmp_path / "export"
    with atomic_directory(out, HF_MODEL) as tmp:
        (tmp / "config.json").write_text("{}")
    assert (out / OUTPUT_MARKER).read_text().strip() == HF_MODEL
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        check_output(out, [], overwrite=False, kind=HF_MODEL)
    with pytest.raises(UserError, match=f"holds a {HF_MODEL}, not a {CHECKPOINT}"):
        check_output(out, [], overwrite=True, kind=CHECKPOINT)
    check_output(out, [], overwrite=True, kind=HF_MODEL)
    with atomic_directory(out, HF_MODEL, replace=True) as tmp:
        (tmp / "config.json").write_text('{"new": 1}')
    assert json.loads((out / "config.json").read_text()) == {"new": 1}


def test_an_empty_folder_is_no_obstacle_and_a_file_is_not_a_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output(empty, [], overwrite=False, kind=TOKENIZER)
    with atomic_directory(empty, TOKENIZER) as tmp:
        (tmp / "tokenizer.json").write_text("{}")
    assert (empty / OUTPUT_MARKER).is_file()
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(UserError, match="exists and is not a directory"):
        check_output(afile, [], overwrite=True, kind=TOKENIZER)
    with pytest.raises(UserError, match="is a directory, not a file"):
        check_output(empty, [], overwrite=True)
