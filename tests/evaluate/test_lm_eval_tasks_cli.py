"""``python -m megacpt.evaluate.lm_eval_tasks``: refuses what it cannot score, and writes its folder whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megacpt.evaluate.lm_eval_tasks import main


def _jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return str(path)


def _model(tmp_path: Path) -> str:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    return str(tmp_path / "model")


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit, match="^2$"):
        main(argv)
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_missing_model_or_empty_text_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ko = _jsonl(tmp_path / "ko.jsonl", ["안녕하세요"])
    out = str(tmp_path / "tasks")
    assert _error([f"ko={ko}", "--out", out, "--model", str(tmp_path / "nope")], capsys) == (
        f"error: {tmp_path / 'nope'} is not a Hugging Face model directory (no config.json)"
    )
    empty = _jsonl(tmp_path / "empty.jsonl", ["", "  "])
    line = _error([f"ko={empty}", "--out", out, "--model", _model(tmp_path), "--eod-id", "0"], capsys)
    assert line == f"error: {empty} holds no non-empty 'text' field: nothing to score for ko"
    line = _error(
        [f"ko={ko}", f"ko={ko}", "--out", out, "--model", str(tmp_path / "model"), "--eod-id", "0"], capsys
    )
    assert line.startswith("error: language 'ko' is given twice")
    assert not Path(out).exists()


def test_an_existing_folder_needs_overwrite_and_keeps_no_stale_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ko, ja = _jsonl(tmp_path / "ko.jsonl", ["안녕"]), _jsonl(tmp_path / "ja.jsonl", ["こんにちは"])
    out, model = tmp_path / "tasks", _model(tmp_path)
    main([f"ko={ko}", f"ja={ja}", "--out", str(out), "--model", model, "--eod-id", "0"])
    assert (out / "megacpt_bpb_ja.yaml").is_file()
    capsys.readouterr()
    line = _error([f"ko={ko}", "--out", str(out), "--model", model, "--eod-id", "0"], capsys)
    assert line == f"error: {out} already exists; pass --overwrite to replace it"
    main([f"ko={ko}", "--out", str(out), "--model", model, "--eod-id", "0", "--overwrite"])
    assert sorted(p.name for p in out.glob("*.yaml")) == ["megacpt_bpb.yaml", "megacpt_bpb_ko.yaml"]
