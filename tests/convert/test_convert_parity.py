"""HF -> Megatron -> HF for every family: logit parity at TP1 PP1 and TP2 PP2 (gloo), bit-exact round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from megacpt.checkpoint.meta import read_meta
from megacpt.checkpoint.tensors import tensor_shapes
from megacpt.convert.hf_to_megatron import convert_hf_to_megatron
from megacpt.convert.megatron_to_hf import convert_megatron_to_hf
from tests.convert.tiny_models import COMMON, FAMILIES, hf_logits, make_model, run_workers

TOL = 1e-4
COMMON_VOCAB = COMMON["vocab_size"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each family saved by transformers, converted both ways, and its Megatron logits at two layouts."""
    root = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    tokens = torch.randint(0, COMMON_VOCAB, (2, 24))
    torch.save(tokens, root / "tokens.pt")
    out: dict = {"tokens": tokens, "families": {}}
    pairs = {1: [], 2: []}
    for family in FAMILIES:
        hf = make_model(family, root / family)
        mcore = convert_hf_to_megatron(hf, root / f"{family}.mcore", make_vocab_size_divisible_by=64)
        back = convert_megatron_to_hf(mcore, root / f"{family}.hf", max_shard_bytes=150_000)
        out["families"][family] = {"hf": hf, "mcore": mcore, "back": back, "ref": hf_logits(hf, tokens)}
        for tp in pairs:
            pairs[tp] += [mcore, root / f"{family}.tp{tp}.pt"]
    run_workers("parity_worker.py", 1, 1, 1, root / "tokens.pt", *pairs[1])
    run_workers("parity_worker.py", 4, 2, 2, root / "tokens.pt", *pairs[2])
    for family, entry in out["families"].items():
        entry["tp1"] = torch.load(root / f"{family}.tp1.pt")
        entry["tp2"] = torch.load(root / f"{family}.tp2.pt")
    return out


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for shard in directory.glob("*.safetensors"):
        tensors.update(load_file(shard))
    return tensors


@pytest.mark.multiproc
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("layout", ["tp1", "tp2"])
def test_megatron_logits_match_hf(converted: dict, family: str, layout: str) -> None:
    entry = converted["families"][family]
    ref, got = entry["ref"], entry[layout]
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < TOL


@pytest.mark.multiproc
@pytest.mark.parametrize("family", list(FAMILIES))
def test_round_trip_is_bit_exact(converted: dict, family: str) -> None:
    entry = converted["families"][family]
    original, back = _tensors(entry["hf"]), _tensors(entry["back"])
    assert sorted(original) == sorted(back)
    for name, tensor in original.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
    assert len(list(entry["back"].glob("*.safetensors"))) > 1  # sharded, with an index
    config = json.loads((entry["back"] / "config.json").read_text())
    assert (
        config["vocab_size"] == COMMON_VOCAB
        and config["model_type"] == json.loads((entry["hf"] / "config.json").read_text())["model_type"]
    )
    assert torch.equal(hf_logits(entry["back"], converted["tokens"]), entry["ref"])


@pytest.mark.multiproc
def test_checkpoint_stores_true_vocab_and_config(converted: dict) -> None:
    entry = converted["families"]["qwen2"]
    meta = read_meta(entry["mcore"])
    assert meta["vocab_size"] == COMMON_VOCAB
    assert meta["model"]["add_qkv_bias"] and meta["model"]["tie_embeddings"]
    shapes = tensor_shapes(entry["mcore"])
    assert shapes["embedding.word_embeddings.weight"] == (256, 64)  # padded to a multiple of 64
    assert "output_layer.weight" not in shapes
    assert shapes["decoder.layers.self_attention.linear_qkv.weight"][0] == 2  # stacked over layers
    assert (entry["mcore"] / "hf" / "generation_config.json").is_file()
