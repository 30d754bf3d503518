"""Is vocabulary expansion worth it? SmolLM2 adapted with and without it, bits per byte against seconds.

Swallow's question on the real model. Both arms reuse a finished quickstart's outputs
(``--quickstart DIR``: its held-out split, tokenised data and checkpoints) and train on two
processes (DP=2) with the same mix (45/45/10 ko/ja/en by sampled tokens), the same global batch of
2,048 tokens, the same LRs and the same number of steps, validating every ``--eval-every`` steps on
the same held-out documents:

- ``expanded``: the quickstart's schedule (``examples/quickstart/cpt_smollm2.yaml``) from the resized
  checkpoint, on data tokenised with the expanded tokenizer;
- ``expanded, one stage`` (with ``--one-stage-arm``): the same without the new-rows-only stage;
- ``base vocabulary``: one stage training every parameter from the unexpanded checkpoint, on data
  tokenised with SmolLM2's own tokenizer (the same LRs; there are no new rows to warm up).

Each arm runs at every peak LR of ``--lrs`` (the same small grid for both; the minimum is a tenth,
the embedding at the same LR) and is judged at its best: the lowest mean of its Korean and Japanese
bits per byte at the end.

Seconds are training seconds (the sum of ``step_time_s``, validation excluded); the expanded arm's
clock starts at the wall-clock of its resize and initialisation (rerun here and timed, calibration
included), which the base arm does not need. The arms are so compared at equal wall-clock: the plot
shows bits per byte per language against them, and the table reads both curves at the shorter
arm's total time (linear interpolation).

    PYTHONPATH=. python bench/expansion_ab.py --quickstart runs/quickstart --steps 20 --eval-every 5 \
        --lrs 3e-4,1e-3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from megacpt.convert.reference_model import fetch_smollm2
from megacpt.recipes.corpora import EXAMPLES
from megacpt.recipes.quickstart import LANGS, MIX, Layout, _datasets, _eod_id, _tokenise

CONFIG = EXAMPLES / "quickstart" / "cpt_smollm2.yaml"


def arm_overrides(lay: Layout, expanded: bool, steps: int, eval_every: int, run_dir: Path) -> list[str]:
    which = "expanded" if expanded else "base"
    train = {lang: lay.dataset(which, lang, "train") for lang in MIX}
    valid = {lang: lay.dataset(which, lang, "heldout") for lang in LANGS}
    common = [
        "model=from_checkpoint",
        _datasets("datasets", train, MIX),
        _datasets("valid_datasets", valid),
        f"training.train_steps={steps}",
        f"training.eval_interval={eval_every}",
        "training.eval_at_start=true",
        f"logging.run_dir={run_dir}",
        "checkpoint.save_at_end=false",
    ]
    if expanded:
        expansion = json.loads((lay.tokenizer / "expansion.json").read_text(encoding="utf-8"))
        return [
            *common,
            f"checkpoint.pretrained={lay.cpt_init}",
            f"data.eod_id={_eod_id(lay.tokenizer)}",
            f"schedule.old_vocab_size={expansion['base_vocab_size']}",
        ]
    return [
        *common,
        f"checkpoint.pretrained={lay.base_megatron}",
        f"data.eod_id={_eod_id(fetch_smollm2())}",
        "schedule.stages=[]",
        "schedule.old_vocab_size=null",
    ]


def resize_seconds(lay: Layout, scratch: Path) -> float:
    """Wall-clock of the quickstart's resize and initialisation, rerun into ``scratch``."""
    cmd = [
        sys.executable, "-m", "megacpt", "resize", "--input", str(lay.base_megatron), "--output", str(scratch),
        "--base-tokenizer", str(fetch_smollm2()), "--tokenizer", str(lay.tokenizer), "--overwrite",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def curves(run_dir: Path, offset: float = 0.0) -> dict[str, list[tuple[float, float]]]:
    """Per language, (seconds, bits per byte) at each validation; the clock starts at ``offset``."""
    seconds, out = offset, {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        seconds += record.get("step_time_s") or 0.0
        for key, value in record.items():
            if key.startswith("val_bpb/"):
                out.setdefault(key.removeprefix("val_bpb/"), []).append((seconds, value))
    return out


def at(points: list[tuple[float, float]], t: float) -> float:
    """The curve's value at ``t`` seconds (linear between validations)."""
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
    return points[-1][1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--quickstart", type=Path, default=Path("runs/quickstart"), help="a finished quickstart's --out"
    )
    p.add_argument("--out", type=Path, default=Path("runs/expansion_ab"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--one-stage-arm", action="store_true", help="also the expanded model in one stage")
    p.add_argument("--lrs", default="3e-4", help="comma-separated peak LRs, the grid of every arm")
    args = p.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]
    lay = Layout(args.quickstart.resolve())
    for lang in MIX:  # the base arm trains on the same text tokenised with SmolLM2's own tokenizer
        _tokenise(lay, "base", fetch_smollm2(), lang, "train")
    arms = {"expanded": (True, [])}
    if args.one_stage_arm:
        arms["expanded, one stage"] = (True, ["schedule.stages=[]"])
    arms["base vocabulary"] = (False, [])
    init = resize_seconds(lay, args.out.resolve() / "resized")
    print(f"resize and initialisation: {init:.0f} s (on the expanded arm's clock)", flush=True)
    grid: dict[str, dict[str, list[tuple[float, float]]]] = {}
    best: dict[str, tuple[str, float]] = {}  # arm -> (its best run, its mean ko/ja bits per byte)
    for (arm, (expanded, arm_extra)), lr in itertools.product(arms.items(), lrs):
        name = f"{arm}, lr {lr:g}"
        extra = [*arm_extra, f"optimizer.lr={lr}", f"optimizer.min_lr={lr / 10}"]
        run_dir = args.out.resolve() / name.replace(",", "").replace(" ", "_")
        if (
            not (run_dir / "metrics.jsonl").is_file()
            or "val_bpb" not in (run_dir / "metrics.jsonl").read_text().splitlines()[-1]
        ):
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node=2",
                "-m",
                "megacpt.train",
                str(CONFIG),
                *arm_overrides(lay, expanded, args.steps, args.eval_every, run_dir),
                *extra,
            ]
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        grid[name] = curves(run_dir, init if expanded else 0.0)
        print(
            name,
            {lang: [(round(t), round(v, 4)) for t, v in pts] for lang, pts in grid[name].items()},
            flush=True,
        )
        target = sum(grid[name][lang][-1][1] for lang in ("ko", "ja")) / 2
        if arm not in best or target < best[arm][1]:
            best[arm] = (name, target)
    results = {name: grid[name] for name, _ in best.values()}
    horizon = min(pts[-1][0] for arm in results.values() for pts in arm.values())
    langs = list(next(iter(results.values())))
    print(f"\nat {horizon:.0f} training seconds (the shorter arm's total; * each arm's best LR):")
    print("| arm | " + " | ".join(f"{lang} bpb" for lang in langs) + " |")
    print("| --- |" + " ---: |" * len(langs))
    for name, arm in grid.items():
        mark = " *" if name in results else ""
        print(f"| {name}{mark} | " + " | ".join(f"{at(arm[lang], horizon):.4f}" for lang in langs) + " |")
    plot(results, args.out / "expansion_ab.png")
    print(f"plot: {args.out / 'expansion_ab.png'}")


def plot(results: dict[str, dict[str, list[tuple[float, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(langs), figsize=(5 * len(langs), 4))
    for ax, lang in zip(axes, langs):
        for style, (name, arm) in zip(("-o", "-.^", "--s"), results.items()):
            ax.plot(*zip(*arm[lang], strict=True), style, label=name)
        ax.set(title=f"{lang}: bits per byte", xlabel="training seconds", ylabel="bits per byte")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
