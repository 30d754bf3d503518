"""Tiny random Hugging Face models of each supported family, saved as sharded safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

COMMON = dict(
    hidden_size=64,
    intermediate_size=96,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=250,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
)
FAMILIES = {
    # Llama 3 with llama3 RoPE scaling, untied.
    "llama3": (
        transformers.LlamaConfig,
        dict(
            num_hidden_layers=4,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        ),
    ),
    # Llama 2 style: multi-head attention, tied here to cover tied Llamas.
    "llama2_tied": (
        transformers.LlamaConfig,
        dict(num_hidden_layers=2, num_key_value_heads=4, tie_word_embeddings=True),
    ),
    "mistral": (transformers.MistralConfig, dict(num_hidden_layers=2, sliding_window=None)),
    # Phi-2's architecture: parallel attention/MLP from one LayerNorm, partial RoPE (40% of each
    # head's channels), GELU (tanh), biases on every linear layer and on the untied LM head.
    "phi": (
        transformers.PhiConfig,
        dict(
            num_hidden_layers=2,
            layer_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.4},
        ),
    ),
    "qwen2": (
        transformers.Qwen2Config,
        dict(
            num_hidden_layers=2,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
    ),
}


def run_workers(script: str, nproc: int, *args: object, timeout: int = 300) -> None:
    """Run a worker script of this folder in ``nproc`` gloo processes (one plain process when 1)."""
    import os
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1"
    )
    path = str(Path(__file__).with_name(script))
    if nproc == 1:
        command = [sys.executable, path]
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={nproc}",
            f"--master-port={port}",
            path,
        ]
    done = subprocess.run(
        [*command, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def english_ids(tokenizer_dir: Path, count: int = 32) -> torch.Tensor:
    """Base-tokenizer ids ([2, count]) of English text from the bundled corpus: old tokens only."""
    import json

    corpus = Path(__file__).resolve().parents[2] / "examples" / "corpora" / "en" / "wikitext2_valid.jsonl"
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    ids: list[int] = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            ids += tokenizer.encode(json.loads(line)["text"], add_special_tokens=False)
            if len(ids) >= 2 * count:
                break
    return torch.tensor(ids[: 2 * count]).reshape(2, count)


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


NEW_TOKENS = ["안녕하세요", "日本語", "▁한국어", "東京", "ありがとう", "서울", "こんにちは"]


def make_tokenizers(directory: Path) -> tuple[Path, Path]:
    """The Mistral-7B SentencePiece tokenizer (32,000 pieces) and a copy with ``NEW_TOKENS`` appended."""
    import json
    import shutil

    import mistral_common

    src, base, expanded = directory / "spm", directory / "tok_base", directory / "tok_expanded"
    src.mkdir(parents=True)
    shutil.copy(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", src / "tokenizer.model")
    (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(src)
    tokenizer.save_pretrained(base)
    tokenizer.add_tokens(NEW_TOKENS)
    tokenizer.save_pretrained(expanded)
    return base, expanded


def make_resize_model(directory: Path, tied: bool = False) -> Path:
    """A random 2-layer Llama over the 32,000-piece vocabulary (heads and FFN divisible by TP 4)."""
    config = transformers.LlamaConfig(
        **{
            **COMMON,
            "vocab_size": 32000,
            "num_hidden_layers": 2,
            "num_key_value_heads": 4,
            "tie_word_embeddings": tied,
        }
    )
    torch.manual_seed(1)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(directory, safe_serialization=True, max_shard_size="2MB")
    return directory
