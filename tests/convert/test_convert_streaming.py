"""HF -> Megatron streams: the tensors read from safetensors never add up to more than about a layer."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest
import torch

from megacpt.checkpoint.tensors import read_tensors
from megacpt.convert import families as fam
from megacpt.convert.hf_to_megatron import convert_hf_to_megatron
from megacpt.convert.safetensors_io import HFReader, HFWriter
from megacpt.errors import UserError

CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 16,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
}
LAYER = {
    "input_layernorm.weight": (64,),
    "post_attention_layernorm.weight": (64,),
    "self_attn.q_proj.weight": (64, 64),
    "self_attn.k_proj.weight": (32, 64),
    "self_attn.v_proj.weight": (32, 64),
    "self_attn.o_proj.weight": (64, 64),
    "mlp.gate_proj.weight": (192, 64),
    "mlp.up_proj.weight": (192, 64),
    "mlp.down_proj.weight": (64, 192),
}
TOP = {"model.embed_tokens.weight": (256, 64), "model.norm.weight": (64,), "lm_head.weight": (256, 64)}


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 16-layer Llama in several safetensors shards with an index."""
    directory = tmp_path_factory.mktemp("streaming") / "hf"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(CONFIG))
    torch.manual_seed(0)
    writer = HFWriter(directory, max_shard_bytes=600_000)
    for name, shape in TOP.items():
        writer.add(name, torch.randn(shape))
    for i in range(CONFIG["num_hidden_layers"]):
        for name, shape in LAYER.items():
            writer.add(f"model.layers.{i}.{name}", torch.randn(shape))
    writer.close()
    return directory


def _nbytes(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(torch.Size(s).numel() * 4 for s in shapes.values())


def test_conversion_holds_about_one_layer(
    hf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live, peak = [0], [0]
    read = HFReader.get

    def tracked(self: HFReader, name: str) -> torch.Tensor:
        tensor = read(self, name)
        live[0] += tensor.nbytes
        peak[0] = max(peak[0], live[0])
        weakref.finalize(tensor, lambda n=tensor.nbytes: live.__setitem__(0, live[0] - n))
        return tensor

    monkeypatch.setattr(HFReader, "get", tracked)
    out = convert_hf_to_megatron(hf_dir, tmp_path / "mcore", make_vocab_size_divisible_by=64)
    layer, largest = _nbytes(LAYER), max(_nbytes({k: v}) for k, v in {**LAYER, **TOP}.items())
    model = CONFIG["num_hidden_layers"] * layer + _nbytes(TOP)
    bound = layer + largest
    assert model >= 10 * bound  # the bound is far below what holding the model would take
    assert 0 < peak[0] <= bound, (peak[0], bound, model)
    assert live[0] == 0

    monkeypatch.setattr(HFReader, "get", read)
    hf = HFReader(hf_dir)
    qkv = read_tensors(out, [fam.QKV_WEIGHT])[fam.QKV_WEIGHT]
    m = fam.model_config(CONFIG, 64)
    for i in (0, CONFIG["num_hidden_layers"] - 1):
        q, k, v = (hf.get(f"model.layers.{i}.self_attn.{p}_proj.weight") for p in "qkv")
        assert torch.equal(qkv[i], fam.fuse_qkv(q, k, v, m))


def test_shape_disagreeing_with_config_fails_before_writing(hf_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for file in hf_dir.iterdir():
        (bad / file.name).symlink_to(file)
    (bad / "config.json").unlink()
    (bad / "config.json").write_text(json.dumps(dict(CONFIG, intermediate_size=200)))
    with pytest.raises(
        UserError, match=r"down_proj.weight has shape \(64, 192\), but config.json implies \(64, 200\)"
    ):
        convert_hf_to_megatron(bad, tmp_path / "out")
    assert not any(p.name.startswith(".out") or p.name == "out" for p in tmp_path.iterdir())
