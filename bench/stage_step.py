"""Time a step of an embedding-rows-only stage against a full-model step; print the ratio.

Baseline: a stage that trains everything. Measured: EEVE's first stage, which trains only the new
input-embedding rows (output layer and transformer layers frozen, so no weight gradients for them;
activation gradients still flow back through every layer to the embedding). Stages alternate
(embedding, full, embedding, full) in one run of the real entry point so that both see the same
machine load; the first step of each stage is not counted. Goal: at most 0.7.

    python bench/stage_step.py examples/tiny_cpu.yaml --steps 8
    python bench/stage_step.py examples/tiny_cpu.yaml --nproc 2 parallel.tensor_model_parallel_size=2

The config's datasets must exist (``bash scripts/quickstart.sh`` writes the tiny one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

EMBEDDING_ROWS = {"input_embeddings": "new", "output_layer": "none", "layers": "none"}
EVERYTHING = {"input_embeddings": "all", "output_layer": "all", "layers": "all", "norms": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=8, help="steps per stage (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of (embedding, full) stages")
    parser.add_argument("--nproc", type=int, default=1)
    args = parser.parse_intermixed_args()

    stages = []
    for i in range(args.rounds):
        stages += [
            {"name": f"embedding-rows-{i}", "steps": args.steps, "train": EMBEDDING_ROWS},
            {"name": f"full-{i}", "steps": args.steps, "train": EVERYTHING},
        ]
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            *args.overrides,
            f"schedule.stages={json.dumps(stages)}",
            "schedule.old_vocab_size=31000",  # pretend the last 1,000 ids are new
            f"logging.run_dir={tmp}/run",
            "logging.tensorboard=false",
            "training.log_interval=1",
            "training.eval_interval=null",
            "checkpoint.save_interval=null",
            "checkpoint.pretrained=null",
        ]
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.nproc}",
            "-m",
            "megacpt.train",
            args.config,
            *overrides,
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        records = [
            json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        ]
    times: dict[str, list[float]] = {"embedding": [], "full": []}
    seen: set[str] = set()
    for record in records:
        if "step_time_s" not in record:
            continue
        stage = record["stage"]
        if stage not in seen:  # the first step of a stage warms up
            seen.add(stage)
            continue
        times["embedding" if stage.startswith("embedding") else "full"].append(record["step_time_s"])
    emb, full = statistics.median(times["embedding"]), statistics.median(times["full"])
    print(f"{len(times['full'])} timed steps each, {args.nproc} process(es)")
    print(f"full-model stage: median {full * 1000:.1f} ms/step")
    print(f"embedding-rows-only stage: median {emb * 1000:.1f} ms/step")
    print(f"ratio embedding-only / full = {emb / full:.3f} (goal <= 0.7)")


if __name__ == "__main__":
    main()
