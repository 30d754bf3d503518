"""The GPU kit: what only a GPU can show, in one run of a few minutes on a lent H100/H200.

For SmolLM2-135M and a Llama-3-8B-shaped model with 4 layers, each trained for a few steps in BF16
through the real entry point (``python -m megacpt.train``, a world of one, NCCL) on random tokens:
median step time, tokens/s, MFU against the device's peak, and peak allocated memory against
``megacpt plan``'s estimate for the same config. Then Transformer Engine and FP8: tried when TE
imports, else what blocked it is recorded. Every figure goes to ``--out`` (default
``bench/results/gpu.md``) with the date and the device.

The lent machine has PyTorch, Python 3.12 and no network: Megatron-core and the few packages megacpt
imports that it lacks travel as wheels (``bash bench/gpu/fetch_wheels.sh`` fills ``.whl/``, which
git ignores; name it in the device call's ``carry``). The kit installs them into ``/tmp/site`` when
Megatron-core does not import, then runs itself again with them on the path, and compiles megacpt's
C++ extension for that Python (pybind11 and a compiler are in the image):

    python3 bench/gpu/kit.py --wheels .whl            # on the GPU machine
    python bench/gpu/kit.py --dry-run --out /tmp/g.md  # here: tiny models, fp32, on the CPU (CI runs it)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITE = "/tmp/site"

# name -> (model section, seq, micro batch, global batch, steps)
MODELS = {
    "SmolLM2-135M": (
        {
            "num_layers": 30,
            "hidden_size": 576,
            "num_attention_heads": 9,
            "num_query_groups": 3,
            "ffn_hidden_size": 1536,
            "vocab_size": 49152,
            "rotary_base": 100000.0,
            "tie_embeddings": True,
        },
        2048,
        8,
        64,
        12,
    ),
    "Llama-3-8B shape, 4 layers": (
        {
            "num_layers": 4,
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_query_groups": 8,
            "ffn_hidden_size": 14336,
            "vocab_size": 128256,
            "rotary_base": 500000.0,
            "tie_embeddings": False,
        },
        4096,
        1,
        8,
        12,
    ),
}
DRY_MODEL = {
    "num_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "ffn_hidden_size": 128,
    "vocab_size": 512,
}


def ensure_installed(wheels: str | None) -> None:
    """Install the carried wheels and run this script again with them, when Megatron-core is missing;
    build megacpt's C++ extension for this Python, when it has none (``setup.py build_ext``)."""
    try:
        import megatron.core  # noqa: F401
    except ImportError:
        if not wheels or os.environ.get("MEGACPT_KIT_INSTALLED"):
            sys.exit(
                "error: megatron-core does not import; carry wheels (bash bench/gpu/fetch_wheels.sh) and pass --wheels"
            )
        found = sorted(str(p) for p in Path(wheels).glob("*.whl"))
        if not found:
            sys.exit(f"error: no wheels in {wheels}")
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        subprocess.run([*pip, "--target", SITE, *found], check=True)
        path = os.pathsep.join([SITE, str(REPO), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path, MEGACPT_KIT_INSTALLED="1")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    sys.path.insert(0, str(REPO))
    try:
        import megacpt.data.indexed  # noqa: F401
    except ImportError:
        build = [sys.executable, "setup.py", "-q", "build_ext", "--inplace"]
        subprocess.run(build, cwd=REPO, check=True, capture_output=True)


def random_dataset(prefix: Path, vocab: int, tokens: int) -> str:
    """Documents of random ids (1,000 tokens each) in Megatron's format, with their byte counts."""
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from megacpt.data import doc_bytes

    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.int32)
    docs = tokens // 1000 + 1
    for _ in range(docs):
        builder.add_document(rng.integers(1, vocab, 1000, dtype=np.int32), [1000])
    builder.finalize(str(prefix) + ".idx")
    np.save(doc_bytes.path_of(str(prefix)), np.full(docs, 4000, dtype=np.int64))
    return str(prefix)


def run_one(name: str, work: Path, dry_run: bool, fp8: bool = False) -> dict:
    """Train one model for a few steps through the entry point (``fp8``: TE's hybrid FP8); its figures."""
    import yaml

    from megacpt.config import load_config
    from megacpt.plan.memory import estimate_memory

    model, seq, micro, global_batch, steps = MODELS[name]
    if dry_run:
        model, seq, micro, global_batch, steps = DRY_MODEL, 64, 2, 4, 3
    run_dir = work / (name.replace(" ", "_").replace(",", "") + ("_fp8" if fp8 else ""))
    data = random_dataset(
        work / f"{run_dir.name}_data", model["vocab_size"], (steps + 2) * global_batch * seq * 2
    )
    config = {
        "model": {**model, "make_vocab_size_divisible_by": 128, "max_position_embeddings": seq},
        "precision": {"dtype": "fp32" if dry_run else "bf16", **({"fp8": "hybrid"} if fp8 else {})},
        "optimizer": {"lr": 1e-4, "min_lr": 1e-5, "warmup_steps": 1},
        "data": {"datasets": [{"prefix": data, "weight": 1.0}], "seq_length": seq, "split": "100,0,0"},
        "training": {"train_steps": steps, "micro_batch_size": micro, "global_batch_size": global_batch},
        "checkpoint": {"save_at_end": False},
        "logging": {"run_dir": str(run_dir), "tensorboard": False},
    }
    path = work / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, "-m", "megacpt.train", str(path)], capture_output=True, text=True, env=env, cwd=REPO
    )
    if dry_run:
        name += " (tiny stand-in)"
    if done.returncode != 0:
        return {
            "model": name + (" FP8" if fp8 else ""),
            "error": (done.stderr.strip().splitlines() or ["failed"])[-1],
        }
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps_done = [r for r in records if "step_time_s" in r]
    timed = steps_done[2:] or steps_done  # the first steps compile and warm up
    step_s = statistics.median(r["step_time_s"] for r in timed)
    loaded = load_config(path, [])
    planned = estimate_memory(loaded, 1).total / 2**30
    measured = max((r.get("max_memory_allocated_gib", 0.0) for r in steps_done), default=0.0)
    return {
        "model": name + (" FP8" if fp8 else ""),
        "tokens_per_step": global_batch * seq,
        "step_s": step_s,
        "tokens_per_s": global_batch * seq / step_s,
        "mfu": statistics.median(r["mfu"] for r in timed) if "mfu" in timed[0] else None,
        "peak_gib": measured or None,
        "planned_gib": planned,
        "losses": [round(r["loss"], 3) for r in steps_done],
    }


def transformer_engine_status() -> str:
    try:
        import transformer_engine  # noqa: F401
    except Exception as err:  # what blocked it, whatever it was
        return f"not importable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return "imports"


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU {platform.processor() or platform.machine()} (torch {torch.__version__}), dry run"


def report(results: list[dict], te: str, device: str, dry_run: bool) -> str:
    lines = [
        f"## {datetime.date.today().isoformat()}: {device}",
        "",
        f"- Command: `python3 bench/gpu/kit.py{' --dry-run' if dry_run else ' --wheels .whl'}`"
        " (each model: `python -m megacpt.train`, a world of one, random tokens, median of the steps after the first two).",
        f"- Transformer Engine: {te}; FP8 {'tried below' if te == 'imports' else 'not tried (needs TE)'}.",
        "",
        "| model | tokens/step | median step s | tokens/s | MFU | peak allocated GiB | `megacpt plan` GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} | | | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] else "n/a"
        lines.append(
            f"| {r['model']} | {r['tokens_per_step']:,} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | {mfu} | "
            f"{peak} | {r['planned_gib']:.2f} |"
        )
    lines += ["", "Losses per step: " + "; ".join(f"{r['model']}: {r.get('losses')}" for r in results), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="GPU figures: step time, MFU, memory against the planner, TE/FP8."
    )
    parser.add_argument(
        "--wheels", help="folder of carried wheels (Megatron-core and what the machine lacks)"
    )
    parser.add_argument(
        "--out", default=str(REPO / "bench" / "results" / "gpu.md"), help="markdown file to append to"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny models in fp32 on the CPU: checks the kit itself"
    )
    args = parser.parse_args()
    ensure_installed(args.wheels)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("error: no CUDA device: run with --dry-run to check the kit on a CPU")
    te = transformer_engine_status()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_one(name, Path(tmp), args.dry_run) for name in MODELS]
        if te == "imports" and not args.dry_run:
            results.append(run_one("Llama-3-8B shape, 4 layers", Path(tmp), False, fp8=True))
    text = report(results, te, device_name(), args.dry_run)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = "" if out.exists() else "# GPU figures (bench/gpu/kit.py)\n\n"
    with open(out, "a", encoding="utf-8") as f:
        f.write(header + text + "\n")
    print(text)
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
