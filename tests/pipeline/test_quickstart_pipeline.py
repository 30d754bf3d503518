"""The quickstart pipeline end to end on a tiny budget: every step runs, the report is written, and a
second run skips every finished step."""

from __future__ import annotations

import json

import pytest

from megacpt.pipeline import quickstart
from megacpt.training.curves import read_metrics, validation

TINY = [
    "--base-steps",
    "4",
    "--cpt-steps",
    "7",
    "--new-tokens",
    "300",
    "--train-vocab-size",
    "4000",
    "--eval-steps",
    "1",
]


@pytest.mark.slow
def test_quickstart_runs_every_step_then_resumes_as_a_no_op(tmp_path, capsys):
    out = tmp_path / "qs"
    assert quickstart.main(["--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "[8/8] report" in printed

    expansion = json.loads((out / "tokenizer" / "expansion.json").read_text())
    assert expansion["base_vocab_size"] == 32000 and expansion["num_new_tokens"] == 300
    hf_config = json.loads((out / "final_hf" / "config.json").read_text())
    assert hf_config["vocab_size"] == expansion["padded_vocab_size"]
    assert (out / "final_hf" / "tokenizer.model").is_file()
    assert json.loads((out / "base_hf" / "config.json").read_text())["vocab_size"] == 32000

    records = read_metrics(out / "cpt_eeve" / "metrics.jsonl")
    val = validation(records)
    assert sorted(val) == ["en", "ja", "ko"]
    assert all(points[0][0] == 0 and points[-1][0] == 7 for points in val.values())  # start and end
    assert {r["stage"] for r in records if "loss" in r} == {
        s["name"] for s in json.loads((out / "cpt_eeve" / "stages.json").read_text())
    }
    report = (out / "report.md").read_text()
    assert "## Validation loss per language" in report and "| ko+ja (held out) |" in report
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")

    stamps = {
        p: p.stat().st_mtime_ns
        for p in (out / "final_hf" / "config.json", out / "cpt_eeve" / "metrics.jsonl")
    }
    assert quickstart.main(["--out", str(out), *TINY]) == 0
    again = capsys.readouterr().out
    assert " done (" not in again  # no step ran a command
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "cpt_eeve" / "loss.png").read_bytes().startswith(b"\x89PNG")  # the trainer's own figure

    with pytest.raises(SystemExit) as exit_info:  # other settings into the same outputs: refused
        quickstart.main(["--out", str(out), *TINY[:-1], "2"])
    assert exit_info.value.code == 2
    assert "--eval-steps 1 -> 2" in capsys.readouterr().err
