"""The quickstart report from hand-written run files, and the pipeline's input checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megacpt.config import load_config
from megacpt.errors import UserError
from megacpt.pipeline import quickstart
from megacpt.pipeline.report import token_ratios, write_report
from megacpt.training.curves import stage_bounds, validation
from megacpt.training.stages import resolve_stages
from tests.helpers import REPO

STAGES = [{"name": "1-new-input-rows", "steps": 2}, {"name": "2-all", "steps": 2}]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _run_files(tmp_path: Path, en_end: float) -> dict[str, Path]:
    """A CPT run (two 2-step stages), a base run, a tokenizer expansion and two stats folders."""
    cpt, base, tok = tmp_path / "cpt", tmp_path / "base", tmp_path / "tok"
    stats_base, stats_new = tmp_path / "data" / "base", tmp_path / "data" / "expanded"
    for folder in (cpt, base, tok, stats_base, stats_new):
        folder.mkdir(parents=True)
    _write_jsonl(cpt / "metrics.jsonl", [
        {"step": 0, "val_loss/ko": 12.0, "val_loss/ja": 13.0, "val_loss/en": 6.0},
        {"step": 0, "stage": "1-new-input-rows", "trainable_params": 10},
        {"step": 1, "loss": 11.0, "stage": "1-new-input-rows"},
        {"step": 2, "loss": 10.0, "stage": "1-new-input-rows"},
        {"step": 2, "val_loss/ko": 10.0, "val_loss/ja": 12.0, "val_loss/en": 6.1},
        {"step": 3, "loss": None, "stage": "2-all"},
        {"step": 4, "loss": 8.0, "stage": "2-all"},
        {"step": 4, "val_loss/ko": 9.0, "val_loss/ja": 10.0, "val_loss/en": en_end},
    ])  # fmt: skip
    (cpt / "stages.json").write_text(json.dumps(STAGES))
    _write_jsonl(base / "metrics.jsonl", [{"step": 0, "val_loss/en": 10.5}, {"step": 6, "val_loss/en": 6.1}])
    held_out = [{"language": "ko+ja", "base_tokens": 200, "new_tokens": 100, "token_ratio": 0.5}]
    (tok / "expansion.json").write_text(json.dumps({"report": held_out}))
    for lang, old, new in (("ko", 1000, 600), ("en", 500, 500)):
        (stats_base / f"{lang}.stats.json").write_text(json.dumps({"tokens": old}))
        (stats_new / f"{lang}.stats.json").write_text(json.dumps({"tokens": new}))
    return {
        "base_run": base,
        "cpt_run": cpt,
        "tokenizer": tok,
        "base_stats": stats_base,
        "expanded_stats": stats_new,
    }


def test_report_shows_start_end_and_checks(tmp_path):
    summary = write_report(tmp_path, **_run_files(tmp_path, en_end=6.24))
    assert summary.val_start == {"ko": 12.0, "ja": 13.0, "en": 6.0}
    assert summary.val_end == {"ko": 9.0, "ja": 10.0, "en": 6.24}
    assert summary.checks == {
        "ko validation loss fell": True,
        "ja validation loss fell": True,
        "en validation loss at most 5% above its start": True,
        "en validation loss within 5% of the English base model's": True,
    }
    text = summary.markdown.read_text()
    assert "| ko | 12.000 | 9.000 | -25.0% |" in text
    assert "| en | 6.000 | 6.240 | +4.0% |" in text
    assert "| 1-new-input-rows | 1-2 | 11.000 | 10.000 |" in text
    assert "| 2-all | 3-4 | 8.000 | 8.000 |" in text  # the non-finite step is left out
    assert "| ko (whole corpus) | 1,000 | 600 | 0.600 |" in text
    assert "| ko+ja (held out) | 200 | 100 | 0.500 |" in text
    assert (
        "validation loss 10.500 at step 0 -> 6.100 at step 6; this run ends English at 6.240 (+2.3%)" in text
    )
    assert summary.png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["report.md", "report.png"]


@pytest.mark.parametrize(
    "en_end,ok,line", [(6.31, False, "6.000 -> 6.310 (+5.2%)"), (6.29, True, "6.000 -> 6.290 (+4.8%)"),
                       (5.0, True, "6.000 -> 5.000 (-16.7%)")]
)  # fmt: skip
def test_english_may_fall_but_not_rise_beyond_five_percent(tmp_path, en_end, ok, line):
    summary = write_report(tmp_path, **_run_files(tmp_path, en_end=en_end))
    assert summary.checks["en validation loss at most 5% above its start"] is ok
    assert f"{'PASS' if ok else 'FAIL'}: en validation loss at most 5% above its start" in summary.verdicts()
    assert f"  en: {line}" in summary.verdicts()
    assert summary.checks["en validation loss within 5% of the English base model's"] is (en_end > 5.795)


def test_helpers_read_stages_validation_and_ratios(tmp_path):
    files = _run_files(tmp_path, en_end=6.0)
    assert stage_bounds(files["cpt_run"] / "stages.json") == [("1-new-input-rows", 0, 2), ("2-all", 2, 4)]
    val = validation([{"step": 4, "val_loss/ko": 2.0}, {"step": 0, "val_loss/ko": 3.0, "val_loss/en": None}])
    assert val == {"ko": [(0, 3.0), (4, 2.0)]}
    ratios = token_ratios(files["tokenizer"] / "expansion.json", files["base_stats"], files["expanded_stats"])
    assert [(r["text"], r["ratio"]) for r in ratios] == [
        ("en (whole corpus)", 1.0),
        ("ko (whole corpus)", 0.6),
        ("ko+ja (held out)", 0.5),
    ]


def test_report_needs_a_finished_run(tmp_path):
    files = _run_files(tmp_path, en_end=6.0)
    (files["cpt_run"] / "metrics.jsonl").unlink()
    with pytest.raises(UserError, match="metrics.jsonl: no such file"):
        write_report(tmp_path, **files)
    _write_jsonl(files["cpt_run"] / "metrics.jsonl", [{"step": 0, "val_loss/ko": 1.0}])
    with pytest.raises(UserError, match="needs validation loss at the start and end"):
        write_report(tmp_path, **files)
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--cpt-steps", "20"], "--cpt-steps must be a positive multiple of 7"),
        (["--base-steps", "0"], "must be positive"),
        (["--new-tokens", "500", "--train-vocab-size", "400"], "--train-vocab-size must exceed --new-tokens"),
    ],
)
def test_bad_budget_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        quickstart.main(["--out", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_quickstart_configs_render_with_the_pipeline_overrides(tmp_path):
    prefixes = {lang: tmp_path / f"{lang}_text_document" for lang in quickstart.MIX}
    overrides = [
        quickstart._datasets(prefixes, quickstart.MIX),
        "model.vocab_size=36096",
        "training.train_steps=14",
    ]
    config = load_config(REPO / "examples" / "quickstart" / "cpt_eeve.yaml", overrides)
    assert [(d.lang, d.weight, d.prefix) for d in config.data.datasets] == [
        (lang, weight, str(prefixes[lang])) for lang, weight in quickstart.MIX.items()
    ]
    assert config.parallel.tensor_model_parallel_size == quickstart.TP
    stages = resolve_stages(config)
    assert [s.steps for s in stages] == [2] * 7
    assert stages[0].name == "1-new-input-rows"
