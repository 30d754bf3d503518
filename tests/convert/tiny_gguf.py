"""A tiny random Llama written as a GGUF file the way llama.cpp's converter writes one.

Float32 tensors under llama.cpp's names, Q and K rows permuted for its RoPE layout, and a byte-level
BPE tokenizer (256 byte tokens, two merges, ``<|endoftext|>``) in the ``tokenizer.ggml.*`` fields,
so that an import must undo the permutation and rebuild the tokenizer to get the model back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

HEADS, KV_HEADS, LAYERS, VOCAB = 4, 2, 2, 300
LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's Q/K row order: the two RoPE halves of each head interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = name.split(".", 3)
    module = rest.removesuffix(".weight")
    return f"blk.{layer}.{LAYER_NAMES[module]}.weight"


def write_tiny_gguf(path: Path, architecture: str = "llama", tied: bool = True) -> dict[str, torch.Tensor]:
    """Write the GGUF; returns the Hugging Face state dict it holds."""
    import gguf

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
    )
    state = {k: v.detach().clone() for k, v in LlamaForCausalLM(config).state_dict().items()}
    if tied:
        state.pop("lm_head.weight")
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(LAYERS)
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(96)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(16)
    writer.add_vocab_size(VOCAB)
    chars = bytes_to_unicode()
    merges = [(chars[ord("t")], chars[ord("h")]), (chars[ord("h")], chars[ord("e")])]
    tokens = [chars[b] for b in range(256)] + ["<|endoftext|>"] + [a + b for a, b in merges]
    tokens += [f"<extra_{i}>" for i in range(VOCAB - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 256 + [3] + [1] * (VOCAB - 257))
    writer.add_token_merges([f"{a} {b}" for a, b in merges])
    writer.add_bos_token_id(256)
    writer.add_eos_token_id(256)
    for name, tensor in state.items():
        array = tensor.numpy().astype(np.float32)
        if "q_proj" in name:
            array = _permute(array, HEADS)
        elif "k_proj" in name:
            array = _permute(array, KV_HEADS)
        writer.add_tensor(gguf_name(name), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return state
