"""Tier 3: training on a CUDA GPU (NCCL, bf16, Transformer Engine when installed); skipped without one.

Run on a GPU machine with ``python -m pytest tests/gpu``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tests.helpers import CORPORA, read_metrics, run_training, tiny_config, write_byte_dataset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
HAVE_TE = importlib.util.find_spec("transformer_engine") is not None


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_byte_dataset(tmp_path_factory.mktemp("gpu") / "en", CORPORA / "en" / "wikitext2_valid.jsonl")


@pytest.mark.parametrize("precision", [{"dtype": "bf16"}, {"dtype": "fp32"}])
def test_trains_on_gpu_without_cpu_patches(tmp_path, data, precision):
    config = tiny_config(data, tmp_path / "run", precision=precision, training={"train_steps": 5})
    result = run_training(config, nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [r["loss"] for r in read_metrics(Path(config["logging"]["run_dir"]))]
    assert len(losses) == 5 and losses[-1] < losses[0]


@pytest.mark.skipif(not HAVE_TE, reason="needs Transformer Engine")
def test_fp8_step_with_transformer_engine(tmp_path, data):
    config = tiny_config(
        data,
        tmp_path / "fp8",
        precision={"dtype": "bf16", "fp8": "hybrid", "fp8_recipe": "delayed"},
        model={"transformer_impl": "transformer_engine", "hidden_size": 128, "ffn_hidden_size": 256},
        training={"train_steps": 3, "micro_batch_size": 8, "global_batch_size": 8},
    )
    result = run_training(config, nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
