"""Shared test helpers: tiny byte-level datasets from the bundled corpora, and launching runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO / "examples" / "corpora"
BYTE_VOCAB = 256  # byte-level ids; padding to 64 x TP stays 256 for TP = 1, 2, 4
EOD, PAD = 0, 1  # NUL and SOH never occur in the text


def write_byte_dataset(prefix: str | os.PathLike, jsonl: Path, max_docs: int | None = None) -> str:
    """Tokenise documents as UTF-8 bytes into a Megatron dataset with Megatron-core's own builder."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = str(prefix)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    with open(jsonl, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if max_docs is not None and i >= max_docs:
                break
            ids = np.frombuffer(json.loads(line)["text"].encode("utf-8"), dtype=np.uint8).astype(np.uint16)
            builder.add_document(np.append(ids, EOD), [len(ids) + 1])
    builder.finalize(prefix + ".idx")
    return prefix


def tiny_config(data_prefix: str, run_dir: Path, **sections: dict) -> dict:
    """A ~100k-parameter config over a byte dataset; ``sections`` update individual sections."""
    config = {
        "model": {
            "num_layers": 4,
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_query_groups": 4,
            "ffn_hidden_size": 128,
            "vocab_size": BYTE_VOCAB,
            "make_vocab_size_divisible_by": 64,
            "max_position_embeddings": 64,
        },
        "optimizer": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 1, "clip_grad": 1.0},
        "data": {
            "datasets": [{"prefix": data_prefix, "weight": 1.0, "lang": "en"}],
            "seq_length": 32,
            "eod_id": EOD,
            "pad_id": PAD,
            "split": "90,10,0",
        },
        "training": {"train_steps": 4, "micro_batch_size": 1, "global_batch_size": 8, "log_interval": 1},
        "logging": {"run_dir": str(run_dir), "tensorboard": False},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def run_training(
    config: dict, nproc: int, overrides: tuple[str, ...] = (), timeout: int = 600
) -> subprocess.CompletedProcess:
    """Write ``config`` into its run dir and train it through the real entry point under torchrun."""
    run_dir = Path(config["logging"]["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--standalone",
        "-m",
        "megacpt.train",
        str(path),
        *overrides,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def train_losses(config: dict, nproc: int) -> list[float]:
    """Train ``config`` through the entry point (which must succeed); its per-step losses."""
    result = run_training(config, nproc)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [r["loss"] for r in read_metrics(Path(config["logging"]["run_dir"]))]


def read_metrics(run_dir: Path) -> list[dict]:
    """The training (not validation) records of a run's ``metrics.jsonl``."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]
