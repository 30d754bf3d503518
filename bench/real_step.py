"""CPU speed and memory of one full-parameter training step on the real model: megacpt vs plain PyTorch.

The model is SmolLM2-135M-Instruct (``fetch_smollm2``). Baseline ("hf"): what a PyTorch user writes
by hand, ``LlamaForCausalLM`` from transformers in fp32, ``torch.optim.AdamW`` (the same betas, weight
decay and epsilon as megacpt's defaults), gradient clipping at 1.0. Ours ("megacpt"): the same model
converted to Megatron (TP1, one process), ``Trainer.train_step()`` with its defaults. Both see the
same global batch (``--batch`` sequences of ``--seq-length`` real tokens from the bundled text, in
one micro-batch). Each runs in its own process, one after the other, so peak RSS (``VmHWM``) is its
own; the script prints median step times after ``--warmup`` steps and their ratio.

    OMP_NUM_THREADS=2 PYTHONPATH=. python bench/real_step.py --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.procstatus import status_kib


def tokens(batch: int, seq: int, tokenizer_dir: Path) -> torch.Tensor:
    """``[batch, seq + 1]`` ids of the bundled Korean, Japanese and English text, concatenated."""
    from transformers import AutoTokenizer

    from megacpt.recipes.corpora import bundled_files, split_documents

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids: list[int] = []
    for lang in ("ko", "ja", "en"):
        for text in split_documents(bundled_files(lang))[0][:40]:
            ids += [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]
    need = batch * (seq + 1)
    return torch.tensor((ids * (need // len(ids) + 1))[:need]).view(batch, seq + 1)


def hf_steps(model_dir: Path, batch: torch.Tensor, steps: int) -> list[float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def megacpt_steps(model_dir: Path, batch: torch.Tensor, steps: int) -> list[float]:
    """``Trainer.train_step`` over a converted checkpoint; the batch goes in through a one-item dataset."""
    from megacpt.config import load_config
    from megacpt.convert.hf_to_megatron import convert_hf_to_megatron
    from megacpt.data.indexed import IndexedWriter, optimal_dtype
    from megacpt.training.trainer import Trainer

    work = Path(tempfile.mkdtemp(prefix="real_step-"))
    ckpt = convert_hf_to_megatron(model_dir, work / "mcore")
    prefix = str(work / "data")
    with IndexedWriter(prefix, optimal_dtype(65000)) as writer:
        for row in batch.tolist() * 4:
            writer.add_document(row)
    b, s = batch.shape[0], batch.shape[1] - 1
    config = load_config(
        None,
        [
            "model=from_checkpoint",
            f"checkpoint.pretrained={ckpt}",
            f"data.datasets=[{{prefix: {prefix}, weight: 1.0}}]",
            f"data.seq_length={s}",
            "data.split=100,0,0",
            "data.eod_id=2",
            "data.pad_id=1",
            f"training.train_steps={steps}",
            f"training.micro_batch_size={b}",
            f"training.global_batch_size={b}",
            f"logging.run_dir={work / 'run'}",
            "logging.tensorboard=false",
            "model.transformer_impl=local",
        ],
    )
    trainer = Trainer(config)
    times = [trainer.train_step()["step_time_s"] for _ in range(steps)]
    trainer.close()
    return times


def child(impl: str, args: argparse.Namespace) -> None:
    from megacpt.convert.reference_model import fetch_smollm2

    model_dir = fetch_smollm2()
    batch = tokens(args.batch, args.seq_length, model_dir)
    run = hf_steps if impl == "hf" else megacpt_steps
    times = run(model_dir, batch, args.warmup + args.steps)[args.warmup :]
    print(
        json.dumps(
            {
                "impl": impl,
                "median_s": statistics.median(times),
                "times": times,
                "peak_rss_gib": status_kib("VmHWM") / 2**20,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-length", type=int, default=512)
    p.add_argument("--child", choices=("hf", "megacpt"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args)
        return
    results = {}
    for impl in ("hf", "megacpt"):
        cmd = [sys.executable, __file__, "--child", impl, *sys.argv[1:]]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        results[impl] = json.loads(out.strip().splitlines()[-1])
        r = results[impl]
        print(
            f"{impl:8s} median {r['median_s']:.2f} s/step  peak RSS {r['peak_rss_gib']:.2f} GiB  "
            f"steps {[round(t, 2) for t in r['times']]}",
            flush=True,
        )
    ratio = results["megacpt"]["median_s"] / results["hf"]["median_s"]
    print(
        f"megacpt / plain PyTorch step time: {ratio:.3f} (goal <= 1.0); "
        f"{args.batch} x {args.seq_length} tokens, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
