"""Time a training step of megacpt's loop against a bare Megatron-core loop; print the ratio.

Baseline ("bare"): what a Megatron-core user writes by hand — the same GPTModel (same layer spec
and layout), Megatron DDP, ``get_megatron_optimizer``, ``get_forward_backward_func``, and a forward
step that passes labels to ``GPTModel`` and averages its loss; batches from the same ``GPTDataset``.
Ours: ``Trainer.train_step()`` (batching, padding-masked vocab-parallel loss, DP loss reduction,
non-finite check, LR schedule). Steps alternate between the two in one process group so that both
see the same machine load; the figure is the ratio of median step times (goal: at most 1.05).

    python bench/train_step.py examples/tiny_cpu.yaml --steps 20
    torchrun --standalone --nproc-per-node 2 bench/train_step.py examples/tiny_cpu.yaml \\
        parallel.tensor_model_parallel_size=2

The config's datasets must exist (``bash scripts/quickstart.sh`` writes the tiny one).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.distributed as dist


def bare_megatron_loop(config, dataset):
    """A hand-written Megatron-core step over the same model, layout and data; returns step()."""
    from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
    from megatron.core.optimizer import get_megatron_optimizer
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from megacpt.config import megatron as mapping
    from megacpt.model.builder import build_model
    from megacpt.training.batches import step_microbatches

    tf_config = mapping.transformer_config(config)
    chunks = build_model(config, tf_config)
    models = [
        DistributedDataParallel(tf_config, mapping.ddp_config(config), c, disable_bucketing=i > 0)
        for i, c in enumerate(chunks)
    ]
    tf_config.finalize_model_grads_func = finalize_model_grads
    tf_config.no_sync_func = models[0].no_sync if len(models) == 1 else [m.no_sync for m in models]
    optimizer = get_megatron_optimizer(mapping.optimizer_config(config), models)
    forward_backward = get_forward_backward_func()
    t = config.training
    from megatron.core import parallel_state

    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        losses = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
        mask = batch["loss_mask"].float()

        def loss_func(output):
            loss = (output.float() * mask).sum() / mask.sum()
            return loss, {"lm_loss": loss.detach().clone()}

        return losses, loss_func

    def step(index: int) -> None:
        for m in models:
            m.zero_grad_buffer()
        optimizer.zero_grad()
        microbatches = step_microbatches(
            dataset,
            step=index,
            global_batch_size=t.global_batch_size,
            micro_batch_size=t.micro_batch_size,
            dp_rank=parallel_state.get_data_parallel_rank(),
            dp_size=parallel_state.get_data_parallel_world_size(),
        )
        iterators = [iter(microbatches) for _ in models]
        forward_backward(
            forward_step_func=forward_step,
            data_iterator=iterators if len(models) > 1 else iterators[0],
            model=models if len(models) > 1 else models[0],
            num_microbatches=len(microbatches),
            seq_length=config.data.seq_length,
            micro_batch_size=t.micro_batch_size,
            forward_only=False,
        )
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each loop")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each loop first")
    args = parser.parse_intermixed_args()
    warnings.filterwarnings("ignore")

    from megacpt.config import load_config
    from megacpt.training.trainer import Trainer

    total = args.steps + args.warmup
    config = load_config(
        args.config,
        [
            *args.overrides,
            f"training.train_steps={total}",
            "logging.tensorboard=false",
            "logging.run_dir=runs/bench_train_step",
            "checkpoint.resume=false",
            "checkpoint.save_at_end=false",
            "training.eval_interval=null",
        ],
    )
    trainer = Trainer(config)
    bare_step = bare_megatron_loop(config, trainer.train_data)
    ours, bare = [], []
    for i in range(total):
        for name, run in (("ours", trainer.train_step), ("bare", lambda i=i: bare_step(i))):
            dist.barrier()
            start = time.perf_counter()
            run()
            dist.barrier()
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                (ours if name == "ours" else bare).append(elapsed)
        trainer.state.step += 1
    if dist.get_rank() == 0:
        p = config.parallel
        layout = f"TP{p.tensor_model_parallel_size} PP{p.pipeline_model_parallel_size} DP{trainer.runtime.data_parallel_size}"
        o, b = statistics.median(ours), statistics.median(bare)
        print(f"layout {layout}, {args.steps} timed steps each, threads/proc {torch.get_num_threads()}")
        print(f"bare Megatron-core loop: median {b * 1000:.1f} ms/step")
        print(f"megacpt Trainer.train_step: median {o * 1000:.1f} ms/step")
        print(f"ratio megacpt / bare = {o / b:.3f} (goal <= 1.05)")
    trainer.close()


if __name__ == "__main__":
    main()
