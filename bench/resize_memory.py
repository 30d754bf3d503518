"""Peak memory of the Megatron-checkpoint resize against loading the whole checkpoint.

Builds a random Llama whose transformer body is ``--body-ratio``-ish times its embedding + output
tensors, converts it to a megacpt checkpoint, then measures the peak resident memory (``ru_maxrss``)
of three fresh processes, each after its imports and a read of the checkpoint metadata (the fixed
overhead): the peak RSS is reset through ``/proc/self/clear_refs`` and its growth measured during
``baseline`` (nothing), ``resize`` (resize_megatron adding ``--new-tokens`` rows) and ``load_all`` (reads
every tensor, the naive way). Prints each growth as a ratio of the resized embedding + output
bytes (Linux only); the target is resize < 2.

    python bench/resize_memory.py --hidden 512 --layers 12 --vocab 4000 --new-tokens 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from procstatus import status_kib  # bench/procstatus.py, beside this script

REPO = Path(__file__).resolve().parents[1]


def child(mode: str, ckpt: str, out: str, old: int, new: int) -> None:
    """Run one operation and print the growth of peak RSS above the RSS just before it."""
    from megacpt.checkpoint.tensors import read_tensors, tensor_shapes
    from megacpt.convert.resize import Expansion
    from megacpt.convert.resize_checkpoint import resize_megatron

    shapes = tensor_shapes(ckpt)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = status_kib("VmRSS")
    if mode == "resize":
        pieces = [[i % old, (7 * i) % old] for i in range(new - old)]
        resize_megatron(ckpt, out, Expansion(old, new, pieces), ("subword_mean", "subword_first"))
    elif mode == "load_all":
        read_tensors(ckpt, list(shapes))
    print(json.dumps({"before_kib": before, "peak_kib": status_kib("VmHWM")}))


def measure(mode: str, ckpt: Path, out: Path, old: int, new: int) -> tuple[int, int]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    args = [sys.executable, __file__, "--child", mode, str(ckpt), str(out), str(old), str(new)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["before_kib"] * 1024, result["peak_kib"] * 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--new-tokens", type=int, default=1000)
    p.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        mode, ckpt, out, old, new = args.child
        child(mode, ckpt, out, int(old), int(new))
        return
    import torch
    import transformers

    from megacpt.convert.hf_to_megatron import convert_hf_to_megatron

    h = args.hidden
    config = transformers.LlamaConfig(
        hidden_size=h,
        intermediate_size=3 * h,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=args.vocab,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        vocab_bytes = sum(
            p.numel() * 4 for n, p in model.named_parameters() if "embed" in n or "lm_head" in n
        )
        body_bytes = sum(p.numel() * 4 for p in model.parameters()) - vocab_bytes
        model.save_pretrained(root / "hf", max_shard_size="50MB")
        del model
        convert_hf_to_megatron(root / "hf", root / "mcore")
        new = args.vocab + args.new_tokens
        resized_bytes = vocab_bytes * new // args.vocab
        peaks = {
            mode: measure(mode, root / "mcore", root / f"out_{mode}", args.vocab, new)
            for mode in ("baseline", "resize", "load_all")
        }
    mib = 1024**2
    print(
        f"body {body_bytes / mib:.1f} MiB, embedding+output {vocab_bytes / mib:.1f} MiB "
        f"(body/vocab = {body_bytes / vocab_bytes:.1f}), resized embedding+output {resized_bytes / mib:.1f} MiB"
    )
    print("| process | RSS before MiB | peak RSS MiB | growth MiB | growth / resized emb+out |")
    print("| --- | --- | --- | --- | --- |")
    for mode, (before, peak) in peaks.items():
        grow = peak - before
        print(
            f"| {mode} | {before / mib:.1f} | {peak / mib:.1f} | {grow / mib:.1f} | {grow / resized_bytes:.2f} |"
        )


if __name__ == "__main__":
    main()
