"""Bits per byte agrees everywhere: the trainer's ``val_bpb``, the HF evaluator and lm-evaluation-harness.

A ~100k-parameter model trains 4 steps on byte-level tokens (ids = UTF-8 bytes, with an HF
``tokenizer.json`` that encodes text to exactly those ids); its validation scores held-out Korean and
English documents given as ``data.valid_datasets``. The export is then scored by
``megacpt.evaluate.hf`` and by the ``lm_eval`` command ``megacpt.evaluate.lm_eval_tasks`` prints.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from transformers.convert_slow_tokenizer import bytes_to_unicode

from megacpt.convert.megatron_to_hf import convert_megatron_to_hf
from megacpt.evaluate import hf, lm_eval_tasks
from megacpt.recipes.corpora import bundled_files, first_bytes, split_documents, write_jsonl
from tests.helpers import EOD, REPO, run_training, tiny_config, write_byte_dataset

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]
SEQ = 32


def byte_tokenizer(directory: Path) -> Path:
    """An HF tokenizer whose ids are the UTF-8 bytes of the text (no merges), eos = byte 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = bytes_to_unicode()
    tok = Tokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=chars[EOD]).save_pretrained(directory)
    return directory


def test_trainer_hf_and_lm_eval_agree(tmp_path: Path) -> None:
    heldout = {}
    for lang, limit in (("ko", 1500), ("en", 3000)):
        docs = first_bytes(split_documents(bundled_files(lang))[1], limit)
        heldout[lang] = write_jsonl(tmp_path / f"{lang}.heldout.jsonl", docs)
    train = write_byte_dataset(tmp_path / "train", bundled_files("en")[0], max_docs=20)
    valid = [
        {"prefix": write_byte_dataset(tmp_path / f"valid_{lang}", path), "weight": 1.0, "lang": lang}
        for lang, path in heldout.items()
    ]
    run = tmp_path / "run"
    config = tiny_config(train, run, training={"eval_at_start": True, "eval_interval": 4, "eval_steps": 400})
    config["data"].update(valid_datasets=valid, seq_length=SEQ)
    result = run_training(config, 1)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trainer = {k: v for r in records if r["step"] == 4 for k, v in r.items() if k.startswith("val_bpb/")}
    assert set(trainer) == {"val_bpb/ko", "val_bpb/en"}

    export = convert_megatron_to_hf(
        run / "checkpoints" / "iter_0000004",
        tmp_path / "export",
        tokenizer_dir=byte_tokenizer(tmp_path / "tok"),
    )
    model, tokenizer = hf.load(export)
    for lang, path in heldout.items():
        texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
        score = hf.score_documents(model, tokenizer, texts, prefix=EOD, seq_length=SEQ)
        assert score.bits_per_byte == pytest.approx(trainer[f"val_bpb/{lang}"], rel=1e-4)

    tasks = tmp_path / "tasks"
    lm_eval_tasks.write_tasks(tasks, heldout)
    cmd = [
        *shlex.split(lm_eval_tasks.command(export, tasks, SEQ, EOD)),
        "--output_path",
        str(tmp_path / "out"),
    ]
    cmd[0:1] = [sys.executable, "-m", "lm_eval"]
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results*.json")).read_text())["results"]
    for lang in heldout:
        harness = results[lm_eval_tasks.task_name(lang)]["bits_per_byte,none"]
        assert harness == pytest.approx(trainer[f"val_bpb/{lang}"], rel=0.01)
