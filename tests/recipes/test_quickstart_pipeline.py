"""The quickstart end to end with ``--base tiny`` on a tiny budget: every step runs, the report is
written, and a second run skips every finished step. (The SmolLM2 run is ``bench``'s and the README's.)"""

from __future__ import annotations

import json
import re

import pytest

from megacpt.recipes import quickstart
from megacpt.training.curves import read_metrics, validation

TINY = ["--base", "tiny", "--base-steps", "4", "--cpt-steps", "7", "--new-tokens", "300", "--eval-steps", "1"]


@pytest.mark.slow
@pytest.mark.multiproc
def test_quickstart_runs_every_step_then_resumes_as_a_no_op(tmp_path, capsys):
    out = tmp_path / "qs"
    assert quickstart.main(["--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "[10/10] report" in printed

    expansion = json.loads((out / "tokenizer" / "expansion.json").read_text())
    assert expansion["base_vocab_size"] == 32000 and expansion["num_new_tokens"] == 300
    assert {r["language"] for r in expansion["report"]} == {"ko", "ja", "en"}
    hf_config = json.loads((out / "final_hf" / "config.json").read_text())
    assert hf_config["vocab_size"] == expansion["new_vocab_size"]
    assert (out / "final_hf" / "tokenizer.model").is_file()
    assert (out / "final_hf" / "generation_config.json").is_file()  # generate() works on the export

    base = validation(read_metrics(out / "base_eval" / "metrics.jsonl"), "val_bpb")
    bpb = validation(read_metrics(out / "cpt" / "metrics.jsonl"), "val_bpb")
    assert sorted(base) == sorted(bpb) == ["en", "ja", "ko"]
    assert all(points[0][0] == 0 and points[-1][0] == 7 for points in bpb.values())  # start and end
    records = read_metrics(out / "cpt" / "metrics.jsonl")
    assert {r["stage"] for r in records if "loss" in r} == {
        s["name"] for s in json.loads((out / "cpt" / "stages.json").read_text())
    }
    report = (out / "report.md").read_text()
    assert "## Bits per byte on held-out text" in report
    assert re.search(r"^\| ko \| \d+\.\d{4} \| \d+\.\d{4} \| \d+\.\d{4} \| \d+\.\d{3} \|$", report, re.M)
    assert "Held-out text, from other sources" in report and "- ko: " in report
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")

    stamps = {
        p: p.stat().st_mtime_ns for p in (out / "final_hf" / "config.json", out / "cpt" / "metrics.jsonl")
    }
    assert quickstart.main(["--out", str(out), *TINY]) == 0
    again = capsys.readouterr().out
    assert " done (" not in again  # no step ran a command
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "cpt" / "loss.png").read_bytes().startswith(b"\x89PNG")  # the trainer's own figure

    with pytest.raises(SystemExit) as exit_info:  # other settings into the same outputs: refused
        quickstart.main(["--out", str(out), *TINY[:-1], "2"])
    assert exit_info.value.code == 2
    assert "--eval-steps 1 -> 2" in capsys.readouterr().err
