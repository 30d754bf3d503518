"""Shared test helpers: tiny byte-level datasets from the bundled corpora, and launching runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from megacpt.data import doc_bytes

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO / "examples" / "corpora"
BYTE_VOCAB = 256  # byte-level ids; padding to 64 x TP stays 256 for TP = 1, 2, 4
EOD, PAD = 0, 1  # NUL and SOH never occur in the text


def write_byte_dataset(prefix: str | os.PathLike, jsonl: Path, max_docs: int | None = None) -> str:
    """Tokenise documents as UTF-8 bytes into a Megatron dataset with Megatron-core's own builder."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = str(prefix)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    sizes = []
    with open(jsonl, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if max_docs is not None and i >= max_docs:
                break
            ids = np.frombuffer(json.loads(line)["text"].encode("utf-8"), dtype=np.uint8).astype(np.uint16)
            builder.add_document(np.append(ids, EOD), [len(ids) + 1])
            sizes.append(len(ids))
    builder.finalize(prefix + ".idx")
    np.save(doc_bytes.path_of(prefix), np.asarray(sizes, dtype=np.int64))  # what preprocessing records
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


# The architectures the shipped ``model: from_checkpoint`` configs are made for, by file name: what
# their checkpoint.pretrained holds once the quickstart has made it (SmolLM2-135M after the resize;
# the tiny English base model of examples/quickstart/base_en.yaml after it).
SHIPPED_ARCHITECTURES = {
    "cpt_smollm2.yaml": {
        "num_layers": 30,
        "hidden_size": 576,
        "num_attention_heads": 9,
        "num_query_groups": 3,
        "ffn_hidden_size": 1536,
        "vocab_size": 63476,
        "max_position_embeddings": 8192,
        "norm_epsilon": 1e-5,
        "rotary_base": 100000.0,
        "tie_embeddings": True,
    },
    "cpt_tiny.yaml": {
        **yaml.safe_load((REPO / "examples/quickstart/base_en.yaml").read_text())["model"],
        "vocab_size": 36000,
    },
}


def load_shipped(path: Path, directory: Path, overrides: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The overrides that make shipped config ``path`` loadable here: for ``model: from_checkpoint``,
    a checkpoint's ``megacpt.json`` with the architecture it is made for, written in ``directory``."""
    if yaml.safe_load(path.read_text()).get("model") != "from_checkpoint":
        return overrides
    from megacpt.checkpoint.meta import write_meta

    model = SHIPPED_ARCHITECTURES[path.name]
    directory.mkdir(parents=True, exist_ok=True)
    write_meta(directory, {"model": model, "vocab_size": model["vocab_size"]})
    return (*overrides, f"checkpoint.pretrained={directory}")
