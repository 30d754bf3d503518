"""Map a megacpt ``Config`` onto Megatron-core's config objects, in one tested place.

Two silent-wrong traps are closed here: ``TransformerConfig`` always receives the TP and PP sizes
(without them every pipeline stage builds every layer), and the vocabulary padding is always
recomputed from the true size and TP, never read from a checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.optimizer import OptimizerConfig as MegatronOptimizerConfig
from megatron.core.transformer import TransformerConfig

from megacpt.config.schema import Config, OptimizerConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def padded_vocab_size(vocab_size: int, make_divisible_by: int, tensor_parallel_size: int) -> int:
    """Smallest multiple of ``make_divisible_by x TP`` that holds ``vocab_size`` rows."""
    multiple = make_divisible_by * tensor_parallel_size
    return -(-vocab_size // multiple) * multiple


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU in its tanh approximation: Phi's ``gelu_new``."""
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"swiglu": F.silu, "gelu": F.gelu, "gelu_tanh": gelu_tanh}


def transformer_config(config: Config) -> TransformerConfig:
    """The ``TransformerConfig`` for this model, layout and precision."""
    m, p, prec = config.model, config.parallel, config.precision
    dtype = DTYPES[prec.dtype]
    on_gpu = torch.cuda.is_available()
    tp = p.tensor_model_parallel_size
    fp8 = {}
    if prec.fp8:
        fp8 = dict(
            fp8=prec.fp8,
            fp8_recipe=prec.fp8_recipe,
            fp8_margin=prec.fp8_margin,
            fp8_amax_history_len=prec.fp8_amax_history_len,
            fp8_amax_compute_algo=prec.fp8_amax_compute_algo,
            fp8_param=prec.fp8_param,
        )
    return TransformerConfig(
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        num_attention_heads=m.num_attention_heads,
        num_query_groups=m.num_query_groups,
        ffn_hidden_size=m.ffn,
        kv_channels=m.kv_channels,
        normalization=m.normalization,
        layernorm_epsilon=m.norm_epsilon,
        gated_linear_unit=m.activation == "swiglu",
        activation_func=ACTIVATIONS[m.activation],
        add_bias_linear=m.add_bias_linear,
        add_qkv_bias=m.add_qkv_bias,
        init_method_std=m.init_method_std,
        hidden_dropout=m.hidden_dropout,
        attention_dropout=m.attention_dropout,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
        context_parallel_size=p.context_parallel_size,
        sequence_parallel=p.sequence_parallel and tp > 1,
        recompute_granularity=p.recompute_granularity,
        recompute_method=p.recompute_method,
        recompute_num_layers=p.recompute_num_layers,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=prec.dtype == "bf16",
        fp16=prec.dtype == "fp16",
        # Fused kernels exist only on a GPU; on CPU the unfused paths compute the same thing.
        use_cpu_initialization=not on_gpu,
        # Only SwiGLU: Megatron's fused bias-GELU is the tanh form, which "gelu" (erf) is not, and
        # "gelu_tanh" is not F.gelu, which is all Megatron knows how to fuse.
        bias_activation_fusion=on_gpu and m.add_bias_linear and m.activation == "swiglu",
        bias_dropout_fusion=on_gpu,
        masked_softmax_fusion=on_gpu,
        gradient_accumulation_fusion=False,
        persist_layer_norm=on_gpu,
        apply_rope_fusion=False,
        cross_entropy_loss_fusion=False,
        **fp8,
    )


def ddp_config(config: Config) -> DistributedDataParallelConfig:
    """Megatron DDP settings: gradient reduction and the distributed optimizer's buffers."""
    p = config.parallel
    return DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=p.overlap_grad_reduce,
        overlap_param_gather=p.overlap_param_gather,
        use_distributed_optimizer=p.use_distributed_optimizer,
        bucket_size=p.bucket_size,
        average_in_collective=False,
    )


def optimizer_config(config: Config, optimizer: OptimizerConfig | None = None) -> MegatronOptimizerConfig:
    """AdamW (decoupled weight decay) with clipping, in the run's precision (``optimizer``: a stage's)."""
    o, prec = optimizer or config.optimizer, config.precision
    return MegatronOptimizerConfig(
        optimizer="adam",
        lr=o.lr,
        min_lr=o.min_lr,
        decoupled_lr=o.embedding_lr,
        decoupled_min_lr=o.embedding_min_lr if o.embedding_lr is not None else None,
        weight_decay=o.weight_decay,
        adam_beta1=o.adam_beta1,
        adam_beta2=o.adam_beta2,
        adam_eps=o.adam_eps,
        clip_grad=o.clip_grad,
        decoupled_weight_decay=True,
        bf16=prec.dtype == "bf16",
        fp16=prec.dtype == "fp16",
        params_dtype=DTYPES[prec.dtype],
        use_distributed_optimizer=config.parallel.use_distributed_optimizer,
        overlap_param_gather=config.parallel.overlap_param_gather,
    )
