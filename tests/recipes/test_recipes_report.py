"""The quickstart report from hand-written run files, and the quickstart's input checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megacpt.errors import UserError
from megacpt.recipes import quickstart
from megacpt.recipes.corpora import chunk_documents
from megacpt.recipes.report import token_ratios, write_report
from megacpt.training.curves import stage_bounds, validation

STAGES = [{"name": "1-new-rows", "steps": 2}, {"name": "2-all", "steps": 2}]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _run_files(tmp_path: Path, en_end: float) -> dict[str, Path]:
    """A CPT run (two 2-step stages), the base model's 0-step validation, and a tokenizer expansion."""
    cpt, base, tok = tmp_path / "cpt", tmp_path / "base", tmp_path / "tok"
    for folder in (cpt, base, tok):
        folder.mkdir(parents=True)
    _write_jsonl(
        cpt / "metrics.jsonl",
        [
            {"step": 0, "val_loss/ko": 9.0, "val_bpb/ko": 3.0, "val_bpb/ja": 2.8, "val_bpb/en": 1.01},
            {"step": 0, "stage": "1-new-rows", "trainable_params": 10},
            {"step": 1, "loss": 11.0, "stage": "1-new-rows"},
            {"step": 2, "loss": 10.0, "stage": "1-new-rows"},
            {"step": 2, "val_bpb/ko": 2.7, "val_bpb/ja": 2.6, "val_bpb/en": 1.02},
            {"step": 3, "loss": None, "stage": "2-all"},
            {"step": 4, "loss": 8.0, "stage": "2-all"},
            {"step": 4, "val_bpb/ko": 2.4, "val_bpb/ja": 2.3, "val_bpb/en": en_end},
        ],
    )
    (cpt / "stages.json").write_text(json.dumps(STAGES))
    _write_jsonl(
        base / "metrics.jsonl", [{"step": 0, "val_bpb/ko": 2.5, "val_bpb/ja": 2.2, "val_bpb/en": 1.0}]
    )
    held_out = [
        {"language": "ko", "base_tokens": 200, "new_tokens": 60, "token_ratio": 0.3},
        {"language": "en", "base_tokens": 500, "new_tokens": 500, "token_ratio": 1.0},
    ]
    expansion = {"report": held_out, "num_new_tokens": 9, "base_vocab_size": 100, "new_vocab_size": 109}
    (tok / "expansion.json").write_text(json.dumps(expansion))
    gen = tmp_path / "continuations"
    gen.mkdir()
    _write_jsonl(gen / "prompts.jsonl", [{"lang": "ko", "text": "대한민국은"}, {"lang": "en", "text": "The"}])
    _write_jsonl(gen / "base.jsonl", [{"continuation": "민주\n공화국"}, {"continuation": " cat `sat`"}])
    _write_jsonl(gen / "final.jsonl", [{"continuation": "수는 수는"}, {"continuation": " dog"}])
    return {"base_eval": base, "cpt_run": cpt, "tokenizer": tok, "continuations": gen}


def test_report_compares_with_the_base_model_in_bits_per_byte(tmp_path):
    summary = write_report(tmp_path, **_run_files(tmp_path, en_end=1.04))
    assert summary.base == {"ko": 2.5, "ja": 2.2, "en": 1.0}
    assert summary.start == {"ko": 3.0, "ja": 2.8, "en": 1.01}
    assert summary.end == {"ko": 2.4, "ja": 2.3, "en": 1.04}
    assert summary.checks == {
        "ko bits per byte below the base model's": True,
        "ja bits per byte below the base model's": False,
        "en bits per byte at most 5% above the base model's": True,
    }
    assert "  ko: 3.000 -> 2.400 bits per byte (0.960 x base 2.500)" in summary.verdicts()
    text = summary.markdown.read_text()
    assert "| ko | 2.5000 | 3.0000 | 2.4000 | 0.960 |" in text
    assert "| 1-new-rows | 1-2 | 11.000 | 10.000 | 2.7000 | 2.6000 | 1.0200 |" in text  # stage end
    assert "| 2-all | 3-4 | 8.000 | 8.000 | 2.4000 | 2.3000 | 1.0400 |" in text  # non-finite left out
    assert "| ko | 200 | 60 | 0.300 |" in text
    assert "9 new tokens (100 -> 109), 2 stage(s)" in text
    assert "- ko: `대한민국은`\n  - base: `민주 공화국`\n  - final: `수는 수는`\n" in text  # one line each
    assert "  - base: `cat 'sat'`" in text
    assert summary.png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["report.md", "report.png"]


@pytest.mark.parametrize("en_end,ok", [(1.051, False), (1.049, True), (0.949, True), (0.5, True)])
def test_english_may_end_at_most_five_percent_above_the_base(tmp_path, en_end, ok):
    summary = write_report(tmp_path, **_run_files(tmp_path, en_end=en_end))
    assert summary.checks["en bits per byte at most 5% above the base model's"] is ok
    assert (
        f"{'PASS' if ok else 'FAIL'}: en bits per byte at most 5% above the base model's"
        in summary.verdicts()
    )


def test_helpers_read_stages_series_and_ratios(tmp_path):
    files = _run_files(tmp_path, en_end=1.0)
    assert stage_bounds(files["cpt_run"] / "stages.json") == [("1-new-rows", 0, 2), ("2-all", 2, 4)]
    val = validation(
        [{"step": 4, "val_bpb/ko": 2.0}, {"step": 0, "val_bpb/ko": 3.0, "val_loss/ko": 9.0}], "val_bpb"
    )
    assert val == {"ko": [(0, 3.0), (4, 2.0)]}
    assert [(r["language"], r["ratio"]) for r in token_ratios(files["tokenizer"] / "expansion.json")] == [
        ("ko", 0.3),
        ("en", 1.0),
    ]


def test_report_needs_a_finished_run(tmp_path):
    files = _run_files(tmp_path, en_end=1.0)
    (files["cpt_run"] / "metrics.jsonl").unlink()
    with pytest.raises(UserError, match="metrics.jsonl: no such file"):
        write_report(tmp_path, **files)
    _write_jsonl(files["cpt_run"] / "metrics.jsonl", [{"step": 0, "val_bpb/ko": 1.0}])
    with pytest.raises(UserError, match="needs bits per byte at the start and the end"):
        write_report(tmp_path, **files)
    assert not (tmp_path / "report.md").exists()


def test_report_refuses_continuations_that_do_not_line_up(tmp_path):
    files = _run_files(tmp_path, en_end=1.0)
    _write_jsonl(files["continuations"] / "final.jsonl", [{"continuation": "only one"}])
    with pytest.raises(UserError, match="base.jsonl and final.jsonl differ in length"):
        write_report(tmp_path, **files)
    _write_jsonl(files["continuations"] / "final.jsonl", [{"continuation": "a"}, {"text": "no field"}])
    with pytest.raises(UserError, match="a continuation line lacks its field 'continuation'"):
        write_report(tmp_path, **files)
    (files["continuations"] / "base.jsonl").unlink()
    with pytest.raises(UserError, match="unreadable continuations"):
        write_report(tmp_path, **files)
    assert not (tmp_path / "report.md").exists()


def test_long_held_out_documents_are_cut_at_line_breaks():
    article = "\n".join(f"line {i} " + "x" * 300 for i in range(10))
    pieces = chunk_documents(["short", article], max_bytes=1024)
    assert pieces[0] == "short" and len(pieces) == 1 + 4
    assert "\n".join(pieces[1:]) == article
    assert all(len(p.encode()) <= 1024 for p in pieces)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--base-steps", "0"], "expected an integer at least 1, got 0"),
        (["--eval-steps", "0"], "expected an integer at least 1"),
    ],
)
def test_bad_budget_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        quickstart.main(["--out", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
