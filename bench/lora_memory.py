"""Gradient and optimizer memory of a LoRA stage against a full-parameter stage of the same model.

Builds each stage's model, Megatron DDP and optimizer in this process (a world of one) for a
Llama-shaped model, creates Adam's state as its first step would, and counts the bytes of the
gradient buffers and of the optimizer (its fp32 main copies and two moments). No data or weights
are needed: sizes do not depend on values.

    PYTHONPATH=. python bench/lora_memory.py --shape smollm2-135m --rank 16
"""

from __future__ import annotations

import argparse
from typing import Any

SHAPES = {
    "smollm2-135m": {
        "num_layers": 30,
        "hidden_size": 576,
        "num_attention_heads": 9,
        "num_query_groups": 3,
        "ffn_hidden_size": 1536,
        "vocab_size": 49152,
        "tie_embeddings": True,
    },
    "llama-1b": {  # Llama-3.2-1B's body with a 32k vocabulary
        "num_layers": 16,
        "hidden_size": 2048,
        "num_attention_heads": 32,
        "num_query_groups": 8,
        "ffn_hidden_size": 8192,
        "vocab_size": 32000,
        "tie_embeddings": True,
    },
}


def _torch_optimizers(optimizer: Any) -> list[Any]:
    return [sub.optimizer for sub in getattr(optimizer, "chained_optimizers", [optimizer])]


def measure(shape: str, train: dict, dtype: str) -> dict[str, int]:
    from megacpt.compat import optimizer as optimizer_compat
    from megacpt.config.loader import from_dict
    from megacpt.config.schema import Config
    from megacpt.training.setup import build_stage_model
    from megacpt.training.stages import resolve_stages

    config = from_dict(
        Config,
        {
            "model": {**SHAPES[shape], "make_vocab_size_divisible_by": 128, "max_position_embeddings": 2048},
            "precision": {"dtype": dtype},
            "data": {"datasets": [{"prefix": "unused", "weight": 1.0}], "seq_length": 512},
            "training": {"train_steps": 1, "micro_batch_size": 1, "global_batch_size": 1},
            "schedule": {"stages": [{"name": "measured", "steps": 1, "train": train}]},
        },
    )
    stage = build_stage_model(config, resolve_stages(config)[0])
    optimizer_compat.materialise_adam_state(stage.optimizer)
    grads = sum(b.grad_data.numel() * b.grad_data.element_size() for m in stage.models for b in m.buffers)
    state = 0
    for opt in _torch_optimizers(stage.optimizer):
        for group in opt.param_groups:
            for param in group["params"]:
                state += sum(t.numel() * t.element_size() for t in opt.state[param].values() if t.dim() > 0)
                if dtype != "fp32":
                    state += param.numel() * param.element_size()  # the fp32 main copy
    return {
        "trainable": stage.freeze.trainable_numel,
        "gradient_bytes": grads,
        "optimizer_bytes": state,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 needs a GPU")
    args = parser.parse_args()
    from megacpt.config.loader import from_dict
    from megacpt.config.schema import Config
    from megacpt.parallel.runtime import init_runtime

    init_runtime(from_dict(Config, {"data": {"datasets": [{"prefix": "unused", "weight": 1.0}]}}))
    full = measure(args.shape, {"layers": "all", "norms": True}, args.dtype)
    lora_only = {
        "input_embeddings": "none",
        "output_layer": "none",
        "layers": "none",
        "lora": {"rank": args.rank},
    }
    lora = measure(args.shape, lora_only, args.dtype)
    print(f"| stage ({args.shape}, {args.dtype}) | trainable parameters | gradient MiB | optimizer MiB |")
    print("| --- | ---: | ---: | ---: |")
    for name, m in (("every parameter", full), (f"LoRA rank {args.rank}, all four targets", lora)):
        print(
            f"| {name} | {m['trainable']:,} | {m['gradient_bytes'] / 2**20:,.1f} | "
            f"{m['optimizer_bytes'] / 2**20:,.1f} |"
        )
    print(
        f"LoRA / full: optimizer {lora['optimizer_bytes'] / full['optimizer_bytes']:.4f}, "
        f"gradients {lora['gradient_bytes'] / full['gradient_bytes']:.4f}"
    )


if __name__ == "__main__":
    main()
