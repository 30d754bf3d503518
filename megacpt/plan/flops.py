"""Model FLOPs per training step, and the utilisation (MFU) they imply at a given step time.

PaLM's convention (Chowdhury et al. 2022, appendix B), which the published Megatron/NeMo MFU
figures also follow: 6 FLOPs per matmul parameter per token (forward and backward), plus
``12 x layers x seq x (heads x head_dim)`` per token for the attention scores and their use,
without halving for the causal mask; recomputation is not counted (it is hardware FLOPs, not
model FLOPs). The input embedding is a lookup, not a matmul; the output layer is counted.
"""

from __future__ import annotations

from megacpt.config.megatron import padded_vocab_size
from megacpt.config.schema import Config

# Dense peak of one H100 SXM, FLOP/s (NVIDIA data sheet, without sparsity).
# FP32 math runs on the TF32 tensor cores (half the BF16 rate).
H100_PEAK = {"bf16": 989e12, "fp16": 989e12, "fp32": 989e12 / 2, "fp8": 1979e12}


def matmul_params(config: Config) -> int:
    """Weights that multiply activations: the linear layers of every block and the output layer."""
    m = config.model
    kv = m.head_dim
    groups = m.groups
    h, ffn = m.hidden_size, m.ffn
    fc1 = 2 * ffn if m.activation == "swiglu" else ffn
    per_layer = (
        kv * (m.num_attention_heads + 2 * groups) * h + kv * m.num_attention_heads * h + fc1 * h + ffn * h
    )
    vocab = padded_vocab_size(m.vocab_size, m.make_vocab_size_divisible_by, 1)
    return m.num_layers * per_layer + vocab * h


def flops_per_token(config: Config) -> float:
    """Model FLOPs to train on one token at the config's sequence length."""
    m = config.model
    kv = m.head_dim
    attention = 12 * m.num_layers * config.data.seq_length * m.num_attention_heads * kv
    return 6 * matmul_params(config) + attention


def flops_per_step(config: Config) -> float:
    """Model FLOPs of one optimizer step (``global_batch_size`` sequences)."""
    return flops_per_token(config) * config.training.global_batch_size * config.data.seq_length


def peak_flops(config: Config) -> float:
    """The H100 dense peak for the config's math precision."""
    return H100_PEAK["fp8" if config.precision.fp8 else config.precision.dtype]


def device_peak_flops(config: Config, device_name: str | None) -> float | None:
    """Peak FLOP/s of one device for MFU: ``logging.peak_tflops``, else an H100/H200's, else unknown."""
    if config.logging.peak_tflops is not None:
        return config.logging.peak_tflops * 1e12
    if device_name and ("H100" in device_name or "H200" in device_name):  # same tensor cores
        return peak_flops(config)
    return None


def mfu(config: Config, world_size: int, step_seconds: float) -> float:
    """Model FLOPs utilisation of ``world_size`` H100s that take ``step_seconds`` per step."""
    return flops_per_step(config) / (world_size * step_seconds * peak_flops(config))


def tokens_per_gpu_second(config: Config, utilisation: float) -> float:
    """Tokens per second per H100 at a given MFU."""
    return utilisation * peak_flops(config) / flops_per_token(config)
