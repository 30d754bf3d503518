"""Re-save a megacpt checkpoint as a model trained at another TP would have saved it (sharded by TP).

Usage under torchrun: ``reshard_worker.py SRC TP OUT [TP OUT ...]``; each TP must divide the world.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch.distributed as dist


def main() -> None:
    from megatron.core import dist_checkpointing, parallel_state

    from megacpt.checkpoint.meta import META, read_meta
    from megacpt.checkpoint.state import load_pretrained
    from megacpt.config.loader import from_dict
    from megacpt.config.megatron import transformer_config
    from megacpt.config.schema import Config, ModelConfig, ParallelConfig
    from megacpt.model.builder import build_model
    from megacpt.parallel.runtime import init_runtime, shutdown

    src = sys.argv[1]
    model_config = from_dict(ModelConfig, read_meta(src)["model"], "model")
    model_config.transformer_impl = "local"
    for tp, out in zip(sys.argv[2::2], sys.argv[3::2]):
        config = Config(model=model_config, parallel=ParallelConfig(tensor_model_parallel_size=int(tp)))
        if parallel_state.model_parallel_is_initialized():
            parallel_state.destroy_model_parallel()
        init_runtime(config)
        (model,) = build_model(config, transformer_config(config))
        load_pretrained(src, [model], model_config.vocab_size)
        if dist.get_rank() == 0:
            Path(out).mkdir(parents=True)
        dist.barrier()
        dist_checkpointing.save({"model": model.sharded_state_dict()}, out)
        if dist.get_rank() == 0:
            shutil.copy(Path(src) / META, Path(out) / META)
        dist.barrier()
    shutdown()


if __name__ == "__main__":
    main()
