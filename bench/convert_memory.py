"""Peak memory of the streaming HF -> Megatron conversion against the eager one it replaced.

Writes a random Llama as sharded safetensors with an index (bf16 by default), then converts it in
fresh processes. Each process first imports everything, opens a gloo group and declares the
conversion (reading the safetensors headers: the fixed overhead); its peak RSS is then reset
through ``/proc/self/clear_refs`` and the growth read from ``VmHWM`` during ``baseline`` (nothing),
``streaming`` (``convert_hf_to_megatron``: tensors made one at a time while writing) and ``eager``
(every tensor made first, then ``dist_checkpointing.save`` with Megatron's default torch_dist
strategy: the code before the change). Prints each growth against the model's size, its largest
layer and its largest tensor, and checks that both outputs hold the same tensors (Linux only).

    python bench/convert_memory.py --layers 24 --hidden 1024 --ffn 2816 --vocab 32000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from procstatus import status_kib  # bench/procstatus.py, beside this script

REPO = Path(__file__).resolve().parents[1]


class AnonSampler(threading.Thread):
    """Polls ``RssAnon`` (memory that must be held, unlike file pages the kernel can drop) every 2 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib, self.running = status_kib("RssAnon"), True

    def run(self) -> None:
        while self.running:
            self.peak_kib = max(self.peak_kib, status_kib("RssAnon"))
            time.sleep(0.002)


def child(mode: str, hf: str, out: str) -> None:
    """Run one conversion; print RSS before it, its peak (exact) and sampled anonymous peak, KiB."""
    from megatron.core import dist_checkpointing

    from megacpt.checkpoint.tensors import full_tensor, layer_tensor, single_process_group, write_checkpoint
    from megacpt.convert import hf_to_megatron as h2m

    plan = h2m.plan_conversion(hf)
    with single_process_group():
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
        before, anon_before, start = status_kib("VmRSS"), status_kib("RssAnon"), time.perf_counter()
        sampler = AnonSampler()
        sampler.start()
        if mode == "streaming":
            os.makedirs(out)
            write_checkpoint(plan.state, Path(out), plan.meta, plan.loaders)
        elif mode == "eager":
            for key, load in plan.loaders.items():
                sh = plan.state[key]
                if sh.prepend_axis_num:  # a layer of a stacked key
                    plan.state[key] = layer_tensor(
                        sh.key, load(), sh.global_offset[0], sh.axis_fragmentations[0]
                    )
                else:
                    plan.state[key] = full_tensor(sh.key, load())
            os.makedirs(out)
            dist_checkpointing.save(plan.state, out)
        seconds = time.perf_counter() - start
        sampler.running = False
        sampler.join()
    result = {"before_kib": before, "peak_kib": status_kib("VmHWM"), "seconds": seconds}
    result["anon_growth_kib"] = sampler.peak_kib - anon_before
    result["children_peak_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(result))


def write_model(
    directory: Path, layers: int, hidden: int, ffn: int, vocab: int, heads: int, groups: int
) -> dict:
    """A random Llama in 200 MB safetensors shards; returns total, largest layer and tensor bytes."""
    import torch

    from megacpt.convert.safetensors_io import HFWriter

    d = hidden // heads
    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": groups,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
    }
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    layer = {
        "input_layernorm.weight": (hidden,),
        "post_attention_layernorm.weight": (hidden,),
        "self_attn.q_proj.weight": (heads * d, hidden),
        "self_attn.k_proj.weight": (groups * d, hidden),
        "self_attn.v_proj.weight": (groups * d, hidden),
        "self_attn.o_proj.weight": (hidden, heads * d),
        "mlp.gate_proj.weight": (ffn, hidden),
        "mlp.up_proj.weight": (ffn, hidden),
        "mlp.down_proj.weight": (hidden, ffn),
    }
    top = {
        "model.embed_tokens.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
        "lm_head.weight": (vocab, hidden),
    }
    writer = HFWriter(directory, max_shard_bytes=200 * 1024**2)
    gen = torch.Generator().manual_seed(0)
    for name, shape in top.items():
        writer.add(name, torch.randn(shape, generator=gen, dtype=torch.bfloat16))
    for i in range(layers):
        for name, shape in layer.items():
            writer.add(f"model.layers.{i}.{name}", torch.randn(shape, generator=gen, dtype=torch.bfloat16))
    writer.close()
    nbytes = {k: torch.Size(s).numel() * 2 for k, s in {**layer, **top}.items()}
    layer_bytes = sum(nbytes[k] for k in layer)
    return {
        "total": layers * layer_bytes + sum(nbytes[k] for k in top),
        "layer": layer_bytes,
        "tensor": max(nbytes.values()),
        "shards": len(list(directory.glob("*.safetensors"))),
    }


def measure(mode: str, hf: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(hf), str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_tensors(a: Path, b: Path) -> bool:
    import torch

    from megacpt.checkpoint.tensors import read_tensors, tensor_shapes

    keys = sorted(tensor_shapes(a))
    if keys != sorted(tensor_shapes(b)):
        return False
    return all(torch.equal(read_tensors(a, [k])[k], read_tensors(b, [k])[k]) for k in keys)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--child", nargs=3, metavar=("MODE", "HF", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=2816)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--workdir", help="where to write the models (default: a temporary folder, removed)")
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    root = Path(args.workdir or tempfile.mkdtemp(prefix="convert_memory."))
    try:
        sizes = write_model(
            root / "hf", args.layers, args.hidden, args.ffn, args.vocab, args.heads, args.groups
        )
        mib = 1024**2
        print(
            f"model: {sizes['total'] / mib:.1f} MiB bf16 in {sizes['shards']} shards; "
            f"largest layer {sizes['layer'] / mib:.1f} MiB, largest tensor {sizes['tensor'] / mib:.1f} MiB"
        )
        print(
            "| process | RSS before MiB | peak RSS growth MiB | / model | / layer | / tensor "
            "| anon growth MiB (sampled) | writer subprocess peak RSS MiB | s |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode in ("baseline", "streaming", "eager"):
            r = measure(mode, root / "hf", root / mode)
            growth = (r["peak_kib"] - r["before_kib"]) * 1024
            print(
                f"| {mode} | {r['before_kib'] / 1024:.1f} | {growth / mib:.1f} | {growth / sizes['total']:.2f} "
                f"| {growth / sizes['layer']:.2f} | {growth / sizes['tensor']:.2f} | {r['anon_growth_kib'] / 1024:.1f} "
                f"| {r['children_peak_kib'] / 1024:.1f} | {r['seconds']:.1f} |"
            )
        print(
            f"streaming and eager checkpoints hold equal tensors: {same_tensors(root / 'streaming', root / 'eager')}"
        )
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
