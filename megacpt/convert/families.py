"""Per-family mapping between a Hugging Face decoder and megacpt's Megatron-core ``GPTModel``.

Llama 2/3 (llama3 RoPE scaling included), SOLAR-style deep Llamas, Mistral and Qwen2 share one
parameter naming in Hugging Face, so one adapter covers them; a family differs only in what its
``config.json`` says (Qwen2's qkv bias, tied embeddings, sliding windows). Phi (Phi-2, the base of
EEVE-Korean-2.8B) has its own names: a ``Family`` holds each family's tensor names. The Megatron side uses
the ``dist_checkpointing`` keys, which are the same for the local and the Transformer Engine layer
specs (both store the pre-attention and pre-MLP norms as ``layer_norm_weight`` of the following
fused linear layer). See README.md in this folder for how to add a family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from megacpt.config.schema import ModelConfig, RopeScalingConfig
from megacpt.errors import UserError

EMBEDDING = "embedding.word_embeddings.weight"
OUTPUT = "output_layer.weight"
OUTPUT_BIAS = "output_layer.bias"
FINAL_NORM = "decoder.final_layernorm.weight"
FINAL_NORM_BIAS = "decoder.final_layernorm.bias"
VOCAB_KEYS = (EMBEDDING, OUTPUT, OUTPUT_BIAS)  # one entry per (padded) vocabulary row
QKV_WEIGHT = "decoder.layers.self_attention.linear_qkv.weight"
QKV_BIAS = "decoder.layers.self_attention.linear_qkv.bias"
FC1 = "decoder.layers.mlp.linear_fc1.weight"
EXTRA_STATE_KEYS = tuple(
    f"decoder.layers.{name}._extra_state"
    for name in (
        "self_attention.linear_qkv",
        "self_attention.linear_proj",
        "mlp.linear_fc1",
        "mlp.linear_fc2",
    )
)
HF_EMBEDDING = "model.embed_tokens.weight"
HF_OUTPUT = "lm_head.weight"
HF_FINAL_NORM = "model.norm.weight"
_NORM = "decoder.layers.self_attention.linear_qkv.layer_norm_"  # the input norm, in both layer specs


@dataclass(frozen=True)
class Family:
    """What distinguishes one Hugging Face architecture in this adapter: its tensor names."""

    model_type: str
    architecture: str
    qkv_bias: bool
    # Megatron key (layers stacked on a leading axis) -> Hugging Face name inside ``model.layers.{i}.``,
    # for the tensors that map one to one; q/k/v (fused) and ``fc1`` (concatenated) are apart.
    layer_keys: dict[str, str]
    fc1: tuple[str, ...]
    top_keys: dict[str, str]  # Megatron key -> Hugging Face name, outside the layers


_LLAMA_LAYERS = {
    _NORM + "weight": "input_layernorm.weight",
    "decoder.layers.self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "decoder.layers.mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
    "decoder.layers.mlp.linear_fc2.weight": "mlp.down_proj.weight",
}
_LLAMA_TOP = {EMBEDDING: HF_EMBEDDING, FINAL_NORM: HF_FINAL_NORM, OUTPUT: HF_OUTPUT}
# Phi: one LayerNorm (with bias) feeding attention and MLP in parallel, biases on every linear layer
# and on the LM head; q, k and v apart in HF (fused like Llama's), ``dense`` the output projection.
_PHI_LAYERS = {
    _NORM + "weight": "input_layernorm.weight",
    _NORM + "bias": "input_layernorm.bias",
    "decoder.layers.self_attention.linear_proj.weight": "self_attn.dense.weight",
    "decoder.layers.self_attention.linear_proj.bias": "self_attn.dense.bias",
    "decoder.layers.mlp.linear_fc1.bias": "mlp.fc1.bias",
    "decoder.layers.mlp.linear_fc2.weight": "mlp.fc2.weight",
    "decoder.layers.mlp.linear_fc2.bias": "mlp.fc2.bias",
}
_PHI_TOP = {
    EMBEDDING: HF_EMBEDDING,
    FINAL_NORM: "model.final_layernorm.weight",
    FINAL_NORM_BIAS: "model.final_layernorm.bias",
    OUTPUT: HF_OUTPUT,
    OUTPUT_BIAS: "lm_head.bias",
}
_GATE_UP = ("mlp.gate_proj.weight", "mlp.up_proj.weight")
FAMILIES = {
    "llama": Family("llama", "LlamaForCausalLM", False, _LLAMA_LAYERS, _GATE_UP, _LLAMA_TOP),
    "mistral": Family("mistral", "MistralForCausalLM", False, _LLAMA_LAYERS, _GATE_UP, _LLAMA_TOP),
    "qwen2": Family("qwen2", "Qwen2ForCausalLM", True, _LLAMA_LAYERS, _GATE_UP, _LLAMA_TOP),
    "phi": Family("phi", "PhiForCausalLM", True, _PHI_LAYERS, ("mlp.fc1.weight",), _PHI_TOP),
}


def family_of(hf_config: dict[str, Any]) -> Family:
    """The adapter for a Hugging Face ``config.json``; unsupported architectures are a UserError."""
    model_type = hf_config.get("model_type")
    if model_type not in FAMILIES:
        raise UserError(f"unsupported architecture {model_type!r}; supported: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_type]


def family_of_model(m: ModelConfig, model_type: str | None = None) -> Family:
    """The family a Megatron model exports to: the one it was converted from, else its architecture's."""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    if m.parallel_attention_mlp:
        return FAMILIES["phi"]
    return FAMILIES["qwen2" if m.add_qkv_bias else "llama"]


def check_expressible(m: ModelConfig, family: Family) -> None:
    """Refuse a model that ``family``'s Hugging Face architecture cannot hold (no silent drops)."""
    phi = family.model_type == "phi"
    wanted = {
        "parallel_attention_mlp": phi,
        "output_layer_bias": phi,
        "add_bias_linear": phi,
        "normalization": "LayerNorm" if phi else "RMSNorm",
    }
    wrong = [f"{k}={getattr(m, k)}" for k, v in wanted.items() if getattr(m, k) != v]
    if (m.activation == "swiglu") == phi or (not phi and m.rotary_percent != 1.0):
        wrong.append(f"activation={m.activation}, rotary_percent={m.rotary_percent}")
    if wrong:
        raise UserError(f"a {family.architecture} cannot hold this model ({', '.join(wrong)})")


def top_keys(family: Family, m: ModelConfig) -> dict[str, str]:
    """The family's tensors outside the layers that this model has (a tied model has no head)."""
    return {k: v for k, v in family.top_keys.items() if not (m.tie_embeddings and k == OUTPUT)}


def _rope(hf_config: dict[str, Any]) -> tuple[float, RopeScalingConfig | None]:
    """RoPE base and llama3 scaling, from transformers 5 ``rope_parameters`` or 4.x ``rope_scaling``."""
    params = dict(hf_config.get("rope_parameters") or hf_config.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", hf_config.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind != "llama3":
        raise UserError(f"unsupported RoPE scaling {kind!r} (supported: default, llama3)")
    scaling = RopeScalingConfig(
        factor=float(params["factor"]),
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]),
    )
    return theta, scaling


def _phi_model_config(hf_config: dict[str, Any], make_vocab_size_divisible_by: int) -> ModelConfig:
    act = hf_config.get("hidden_act", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise UserError(f"unsupported Phi activation {act!r} (gelu_new, gelu_pytorch_tanh or gelu)")
    if hf_config.get("qk_layernorm"):
        raise UserError("Phi with qk_layernorm is not supported")
    heads = int(hf_config["num_attention_heads"])
    theta, scaling = _rope(hf_config)
    params = dict(hf_config.get("rope_parameters") or {})
    return ModelConfig(
        num_layers=int(hf_config["num_hidden_layers"]),
        hidden_size=int(hf_config["hidden_size"]),
        num_attention_heads=heads,
        num_query_groups=int(hf_config.get("num_key_value_heads") or heads),
        ffn_hidden_size=int(hf_config["intermediate_size"]),
        kv_channels=int(hf_config["hidden_size"]) // heads,
        vocab_size=int(hf_config["vocab_size"]),
        make_vocab_size_divisible_by=make_vocab_size_divisible_by,
        max_position_embeddings=int(hf_config["max_position_embeddings"]),
        normalization="LayerNorm",
        norm_epsilon=float(hf_config.get("layer_norm_eps", 1e-5)),
        activation="gelu" if act == "gelu" else "gelu_tanh",
        add_bias_linear=True,
        add_qkv_bias=True,
        rotary_base=theta,
        rope_scaling=scaling,
        rotary_percent=float(
            params.get("partial_rotary_factor", hf_config.get("partial_rotary_factor", 0.5))
        ),
        parallel_attention_mlp=True,
        output_layer_bias=True,
        tie_embeddings=bool(hf_config.get("tie_word_embeddings", False)),
    )


def model_config(hf_config: dict[str, Any], make_vocab_size_divisible_by: int = 128) -> ModelConfig:
    """The megacpt ``ModelConfig`` equivalent to a Hugging Face ``config.json``."""
    family = family_of(hf_config)
    if family.model_type == "phi":
        return _phi_model_config(hf_config, make_vocab_size_divisible_by)
    if hf_config.get("hidden_act", "silu") != "silu":
        raise UserError(f"unsupported activation {hf_config.get('hidden_act')!r} (only silu/SwiGLU)")
    if hf_config.get("mlp_bias") or hf_config.get("attention_bias"):
        raise UserError("linear-layer biases (mlp_bias/attention_bias) are not supported")
    if hf_config.get("use_sliding_window") or (
        family.model_type == "mistral"
        and hf_config.get("sliding_window") is not None
        and hf_config["sliding_window"] < hf_config["max_position_embeddings"]
    ):
        # Full attention equals sliding-window attention only up to the window length.
        max_positions = int(hf_config["sliding_window"])
    else:
        max_positions = int(hf_config["max_position_embeddings"])
    heads = int(hf_config["num_attention_heads"])
    theta, scaling = _rope(hf_config)
    return ModelConfig(
        num_layers=int(hf_config["num_hidden_layers"]),
        hidden_size=int(hf_config["hidden_size"]),
        num_attention_heads=heads,
        num_query_groups=int(hf_config.get("num_key_value_heads") or heads),
        ffn_hidden_size=int(hf_config["intermediate_size"]),
        kv_channels=int(hf_config.get("head_dim") or hf_config["hidden_size"] // heads),
        vocab_size=int(hf_config["vocab_size"]),
        make_vocab_size_divisible_by=make_vocab_size_divisible_by,
        max_position_embeddings=max_positions,
        normalization="RMSNorm",
        norm_epsilon=float(hf_config.get("rms_norm_eps", 1e-6)),
        activation="swiglu",
        add_qkv_bias=family.qkv_bias,
        rotary_base=theta,
        rope_scaling=scaling,
        tie_embeddings=bool(hf_config.get("tie_word_embeddings", False)),
    )


def _head_layout(m: ModelConfig) -> tuple[int, int, int]:
    groups = m.groups
    head_dim = m.head_dim
    return groups, m.num_attention_heads // groups, head_dim


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: ModelConfig) -> torch.Tensor:
    """Megatron's grouped QKV: for each query group, its query heads, then its key, then its value."""
    groups, per_group, d = _head_layout(m)
    rest = q.shape[1:]
    parts = (
        q.reshape(groups, per_group * d, *rest),
        k.reshape(groups, d, *rest),
        v.reshape(groups, d, *rest),
    )
    return torch.cat(parts, dim=1).reshape(-1, *rest)


def split_qkv(qkv: torch.Tensor, m: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of ``fuse_qkv``: (q, k, v) in Hugging Face's layout."""
    groups, per_group, d = _head_layout(m)
    rest = qkv.shape[1:]
    q, k, v = qkv.reshape(groups, (per_group + 2) * d, *rest).split([per_group * d, d, d], dim=1)
    return q.reshape(-1, *rest), k.reshape(-1, *rest), v.reshape(-1, *rest)


def hf_config_from_model(m: ModelConfig, family: Family, base: dict[str, Any] | None) -> dict[str, Any]:
    """A Hugging Face ``config.json`` for ``m``: the original one updated, or a fresh one."""
    hf = dict(base or {"model_type": family.model_type})
    hf.update(
        architectures=[family.architecture],
        vocab_size=m.vocab_size,
        hidden_size=m.hidden_size,
        intermediate_size=m.ffn,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_attention_heads,
        num_key_value_heads=m.groups,
        tie_word_embeddings=m.tie_embeddings,
    )
    rope: dict[str, Any] = {"rope_theta": m.rotary_base, "rope_type": "default"}
    if family.model_type == "phi":
        hf.update(layer_norm_eps=m.norm_epsilon, hidden_act="gelu" if m.activation == "gelu" else "gelu_new")
        hf.update(partial_rotary_factor=m.rotary_percent, qk_layernorm=False)
        rope["partial_rotary_factor"] = m.rotary_percent
    else:
        hf.update(head_dim=m.head_dim, rms_norm_eps=m.norm_epsilon, hidden_act="silu")
    # RoPE as trained (transformers 5's rope_parameters; rope_theta/rope_scaling for 4.x readers).
    if m.rope_scaling is not None:
        rope.update(rope_type="llama3", **vars(m.rope_scaling))
    hf.update(rope_parameters=rope, rope_theta=m.rotary_base)
    hf.pop("rope_scaling", None)
    if m.rope_scaling is not None:
        hf["rope_scaling"] = dict(rope)
    if base is None:
        hf.update(max_position_embeddings=m.max_position_embeddings)
    return hf
