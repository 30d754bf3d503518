"""Run converted checkpoints through Megatron-core at a TP/PP layout and save the last stage's logits.

Usage (under torchrun or as one process): ``parity_worker.py TP PP TOKENS.pt CKPT OUT.pt [CKPT OUT.pt ...]``.
Pipeline stages are run by hand with point-to-point sends; vocab-parallel logits are gathered
across TP. Rank 0 of the last stage writes ``OUT.pt`` (fp32 [b, s, true vocab]).
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist


def logits_of(ckpt: str, tp: int, pp: int, tokens: torch.Tensor) -> torch.Tensor | None:
    from megatron.core import parallel_state, tensor_parallel

    from megacpt.checkpoint.meta import read_meta
    from megacpt.checkpoint.state import load_pretrained
    from megacpt.config.loader import from_dict
    from megacpt.config.megatron import transformer_config
    from megacpt.config.schema import Config, ModelConfig, ParallelConfig
    from megacpt.model.builder import build_model

    meta = read_meta(ckpt)
    config = Config(
        model=from_dict(ModelConfig, meta["model"], "model"),
        parallel=ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp),
    )
    config.model.transformer_impl = "local"
    (model,) = build_model(config, transformer_config(config))
    load_pretrained(ckpt, [model], config.model.vocab_size)
    model.eval()
    b, s = tokens.shape
    positions = torch.arange(s).unsqueeze(0).expand(b, s)
    with torch.no_grad():
        if not parallel_state.is_pipeline_first_stage():
            hidden = torch.empty(s, b, config.model.hidden_size)
            dist.recv(hidden, parallel_state.get_pipeline_model_parallel_prev_rank())
            model.set_input_tensor(hidden)
        out = model(tokens, positions, None)
        if not parallel_state.is_pipeline_last_stage():
            dist.send(out.contiguous(), parallel_state.get_pipeline_model_parallel_next_rank())
            return None
        logits = tensor_parallel.gather_from_tensor_model_parallel_region(out)
    return logits[..., : config.model.vocab_size].float()


def main() -> None:
    from megatron.core import parallel_state

    from megacpt.checkpoint.meta import read_meta
    from megacpt.config.loader import from_dict
    from megacpt.config.schema import Config, ModelConfig, ParallelConfig
    from megacpt.parallel.runtime import init_runtime, shutdown

    tp, pp, tokens_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    pairs = list(zip(sys.argv[4::2], sys.argv[5::2]))
    tokens = torch.load(tokens_file)
    # the layout is checked against the (first) checkpoint's own architecture
    model = from_dict(ModelConfig, read_meta(pairs[0][0])["model"], "model")
    init_runtime(
        Config(
            model=model,
            parallel=ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp),
        )
    )
    for ckpt, out in pairs:
        logits = logits_of(ckpt, tp, pp, tokens)
        if logits is not None and parallel_state.get_tensor_model_parallel_rank() == 0:
            torch.save(logits, out)
        dist.barrier()
    shutdown()


if __name__ == "__main__":
    main()
