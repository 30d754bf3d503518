"""Check the planner's per-GPU memory estimate against the measured peak of real training steps.

Baseline: the measured peak resident memory that a real single-process training step adds, on
this CPU: a fresh process per config imports everything, notes its resident size, resets the
kernel's high-water mark (``/proc/self/clear_refs``), builds ``megacpt.training.trainer.Trainer``,
runs a few steps, and reads the high-water mark (``VmHWM``) back. The planner's figure is
``megacpt.plan.memory.estimate_memory(config, 1, fused=False)`` (the CPU runs the local spec:
unfused norms and SwiGLU; its SDPA attention keeps no ``s x s`` tensors unless attention dropout
sends it to PyTorch's math kernel, which the dropout cases measure). Printed per config:
estimate / measured (1.00 is perfect; the measurement also holds the data pipeline, the
allocator's slack and temporaries that the estimate leaves to its headroom).

    python bench/plan_memory.py [--case selective] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20

BASE = {
    "model": {
        "num_layers": 4,
        "hidden_size": 256,
        "num_attention_heads": 8,
        "num_query_groups": 8,
        "ffn_hidden_size": 704,
        "vocab_size": 4096,
        "make_vocab_size_divisible_by": 128,
        "max_position_embeddings": 512,
    },
    "optimizer": {"lr": 1e-4, "min_lr": 1e-5, "warmup_steps": 0},
    "data": {"seq_length": 512, "eod_id": 0, "pad_id": 1, "split": "100,0,0"},
    "training": {"train_steps": 2, "micro_batch_size": 8, "global_batch_size": 8, "log_interval": 1},
    "checkpoint": {"save_at_end": False, "resume": False},
}
CASES = {
    "fixed overhead (30k params)": {
        "model": {
            "num_layers": 1,
            "hidden_size": 32,
            "num_attention_heads": 4,
            "num_query_groups": 4,
            "ffn_hidden_size": 64,
            "vocab_size": 256,
        },
        "data": {"seq_length": 32},
        "training": {"micro_batch_size": 1, "global_batch_size": 1},
    },
    "states-heavy (55M params, seq 128)": {
        "model": {
            "num_layers": 8,
            "hidden_size": 512,
            "num_query_groups": 4,
            "ffn_hidden_size": 1408,
            "vocab_size": 32000,
        },
        "data": {"seq_length": 128},
        "training": {"micro_batch_size": 2, "global_batch_size": 4},
    },
    "activation-heavy (seq 512 x mb 8)": {},
    "activation-heavy, attention dropout": {"model": {"attention_dropout": 0.1}},
    "activation-heavy, attention dropout, selective recompute": {
        "model": {"attention_dropout": 0.1},
        "parallel": {"recompute_granularity": "selective"},
    },
    "activation-heavy, full recompute": {
        "parallel": {
            "recompute_granularity": "full",
            "recompute_method": "uniform",
            "recompute_num_layers": 1,
        }
    },
}


def _merge(base: dict, update: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in update.items():
        out.setdefault(section, {}).update(values)
    return out


def _proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(config_path: str) -> None:
    """Measure one config in this (fresh) process; print a JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    from megacpt.config import load_config
    from megacpt.training.trainer import Trainer

    config = load_config(config_path, [])
    baseline = _proc_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    trainer = Trainer(config)
    try:
        trainer.train()
    finally:
        trainer.close()
    print(json.dumps({"peak_added_bytes": (_proc_kib("VmHWM") - baseline) * 1024}))


def write_dataset(prefix: Path, vocab: int) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.uint16)
    for _ in range(400):
        doc = rng.integers(2, vocab, size=600, dtype=np.uint16)
        builder.add_document(doc, [len(doc)])
    builder.finalize(str(prefix) + ".idx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="", help="only the configs whose name contains this")
    parser.add_argument("--json", action="store_true", help="one JSON object per config, no table")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from megacpt.config import load_config
    from megacpt.plan.memory import estimate_memory

    if not args.json:
        print(
            f"{'config':<40} {'estimate MiB':>12} {'measured MiB':>12} {'est/meas':>8}   (states + max(activations, step workspace))"
        )
    with tempfile.TemporaryDirectory() as tmp:
        for name, update in CASES.items():
            if args.case not in name:
                continue
            tree = _merge(BASE, update)
            prefix = Path(tmp) / f"data{tree['model']['vocab_size']}"
            if not prefix.with_suffix(".idx").exists():
                write_dataset(prefix, tree["model"]["vocab_size"])
            tree["data"]["datasets"] = [{"prefix": str(prefix), "weight": 1.0, "lang": "en"}]
            tree["logging"] = {"run_dir": str(Path(tmp) / "run"), "tensorboard": False}
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(tree))
            estimate = estimate_memory(load_config(path, []), 1, fused=False)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, cwd=REPO
            )
            if out.returncode:
                raise SystemExit(f"{name}: child failed\n{out.stderr[-3000:]}")
            measured = json.loads(out.stdout.strip().splitlines()[-1])["peak_added_bytes"]
            if args.json:
                row = {"case": name, "estimate_bytes": estimate.total, "measured_bytes": measured}
                print(json.dumps(row), flush=True)
                continue
            states = estimate.weights + estimate.gradients + estimate.optimizer
            transient = max(estimate.activations, estimate.step_workspace)
            print(
                f"{name:<40} {estimate.total / MIB:>12.0f} {measured / MIB:>12.0f} "
                f"{estimate.total / measured:>8.2f}   ({states / MIB:.0f} + {transient / MIB:.0f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
