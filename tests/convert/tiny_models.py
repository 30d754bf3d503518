"""Tiny random Hugging Face models of each supported family, saved as sharded safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

COMMON = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, vocab_size=250,
              max_position_embeddings=128, rms_norm_eps=1e-5)
FAMILIES = {
    # Llama 3 with llama3 RoPE scaling, untied.
    "llama3": (transformers.LlamaConfig, dict(num_hidden_layers=4, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
    # Llama 2 style: multi-head attention, tied here to cover tied Llamas.
    "llama2_tied": (transformers.LlamaConfig, dict(num_hidden_layers=2, num_key_value_heads=4,
                                                    tie_word_embeddings=True)),
    "mistral": (transformers.MistralConfig, dict(num_hidden_layers=2, sliding_window=None)),
    "qwen2": (transformers.Qwen2Config, dict(num_hidden_layers=2, tie_word_embeddings=True,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
}


def make_model(family: str, directory: Path, seed: int = 0) -> Path:
    """Save a random fp32 model of ``family`` into ``directory`` in ~200 KB shards; return it."""
    cls, extra = FAMILIES[family]
    config = cls(**{**COMMON, **extra})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # random norms and biases, so that a mix-up of them shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(1 + 0.3 * torch.randn_like(p) if "norm" in name else 0.3 * torch.randn_like(p))
    model.save_pretrained(directory, safe_serialization=True, max_shard_size="200KB")
    return directory


def hf_logits(directory: Path, tokens: torch.Tensor) -> torch.Tensor:
    """fp32 logits [b, s, v] of the Hugging Face model in ``directory``."""
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(tokens).logits
