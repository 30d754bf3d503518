"""The training entry point as a user meets it: shipped configs load, bad input is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from megacpt import train
from megacpt.config import load_config
from megacpt.data.mixture.spec import DataMixture
from megacpt.plan.flops import flops_per_token
from tests.helpers import CORPORA, REPO, load_shipped, tiny_config, write_byte_dataset

EXAMPLES = sorted((REPO / "examples").rglob("*.yaml"))


def _is_mixture_spec(path: Path) -> bool:
    tree = yaml.safe_load(path.read_text())
    return isinstance(tree, dict) and set(tree) == {"datasets"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads_through_the_entry_point(path, capsys, tmp_path):
    if _is_mixture_spec(path):
        assert DataMixture.from_yaml(path).entries
        return
    overrides = load_shipped(path, tmp_path / "pretrained")
    assert train.main([str(path), *overrides, "--dry-run", "--layout-only"]) == 0
    assert "# valid for" in capsys.readouterr().out


@pytest.fixture(scope="module")
def data_prefix(tmp_path_factory):
    return write_byte_dataset(
        tmp_path_factory.mktemp("data") / "en", CORPORA / "en" / "wikitext2_valid.jsonl", 20
    )


@pytest.mark.parametrize(
    "overrides,env,message",
    [
        (
            ["model.hiden_size=64"],
            {},
            "error: unknown config key 'model.hiden_size' (did you mean 'hidden_size'?)",
        ),
        (
            ["parallel.tensor_model_parallel_size=3"],
            {"WORLD_SIZE": "3"},
            "does not divide num_attention_heads 4",
        ),
        (
            ["parallel.tensor_model_parallel_size=2"],
            {"WORLD_SIZE": "3"},
            "world size 3 is not divisible by TP x PP x CP",
        ),
        (
            ["training.global_batch_size=6", "training.micro_batch_size=4"],
            {},
            "global_batch_size 6 is not divisible",
        ),
        (["data.datasets=[{prefix: /nonexistent/en}]"], {}, "missing data file /nonexistent/en.bin"),
        (["precision.fp8=hybrid"], {}, "precision.fp8 needs Transformer Engine"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path, monkeypatch, capsys, data_prefix, overrides, env, message
):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data_prefix, tmp_path / "run")))
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", **env}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        train.main([str(config), *overrides])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "run" / "config.yaml").exists()  # a refused run leaves nothing behind
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data.datasets=[{prefix: /nonexistent/en}]"],
            "data.datasets[0]: missing data file /nonexistent/en.bin",
        ),
        (["model.vocab_size=200"], "holds token id"),
        (["checkpoint.save_dir={blocker}/ckpt"], "cannot write to"),
        (["checkpoint.pretrained={blocker}"], "is not a megacpt checkpoint"),
    ],
)
def test_dry_run_checks_the_files_the_run_would_open(tmp_path, capsys, data_prefix, overrides, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data_prefix, tmp_path / "run")))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        train.main([str(config), *(o.replace("{blocker}", str(blocker)) for o in overrides), "--dry-run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "run").exists()  # nothing written by a refused run


@pytest.mark.slow
def test_tiny_cpu_example_trains_and_writes_its_run_directory(tmp_path):
    """Tier 4: the shipped tiny config, through the real entry point, on text tokenised by our tool."""
    import subprocess
    import sys

    import mistral_common

    sp = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    prefix = tmp_path / "en"
    subprocess.run(
        [
            sys.executable,
            "tools/preprocess_data.py",
            "--input",
            str(CORPORA / "en" / "wikitext2_valid.jsonl"),
            "--output-prefix",
            str(prefix),
            "--tokenizer",
            str(sp),
            "--append-eod",
            "--no-progress",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    data = json.loads((tmp_path / "en.stats.json").read_text())["per_key"]["text"]["dataset"]
    run = tmp_path / "run"
    overrides = [
        f"data.datasets=[{{prefix: {data}, weight: 1.0, lang: en}}]",
        f"logging.run_dir={run}",
        "training.train_steps=4",
        "training.eval_interval=2",
        "training.log_interval=1",
        "checkpoint.save_interval=2",
        "logging.peak_tflops=0.1",  # a made-up device peak: MFU is logged against it
    ]
    subprocess.run(
        [sys.executable, "-m", "megacpt.train", "examples/tiny_cpu.yaml", *overrides],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(
        {"loss", "lr", "grad_norm", "tokens_per_s", "tflops_per_device", "mfu"} <= r.keys() for r in steps
    )
    for r in steps:  # model FLOPs of a step = tokens x FLOPs per token; MFU is their rate over the peak
        flops = flops_per_token(load_config(run / "config.yaml")) * 16 * 128
        assert r["tflops_per_device"] == pytest.approx(flops / r["step_time_s"] / 1e12, rel=1e-6)
        assert r["mfu"] == pytest.approx(r["tflops_per_device"] / 0.1, rel=1e-9)
    assert steps[-1]["loss"] < steps[0]["loss"]
    validations = [r for r in records if "val_loss/en" in r]
    assert [r["step"] for r in validations] == [2, 4] and all(r["val_bpb/en"] > 0 for r in validations)
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["train_steps"] == 4
    assert list((run / "tensorboard").glob("events.*"))
    assert (run / "checkpoints" / "latest").read_text() == "iter_0000004"
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
