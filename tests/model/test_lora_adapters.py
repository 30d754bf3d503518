"""LoRA adapters in one process: a fresh adapter changes nothing, a trained one changes the output,
merging folds it into the weights exactly, and bad settings are refused with their reason.
(Tensor parallelism, checkpoints and the stage's merge: ``tests/training/test_lora_stages.py``.)"""

from __future__ import annotations

import pytest
import torch
from megatron.core import parallel_state, tensor_parallel

from megacpt.checkpoint.tensors import single_process_group
from megacpt.config import megatron as mapping
from megacpt.config.loader import from_dict
from megacpt.config.schema import Config, LoraConfig, TrainableConfig
from megacpt.errors import UserError
from megacpt.model.builder import build_model
from megacpt.model.lora import add_adapters, has_adapters, merge_adapters

MODEL = {
    "num_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_query_groups": 2,
    "ffn_hidden_size": 96,
    "vocab_size": 256,
    "make_vocab_size_divisible_by": 64,
    "max_position_embeddings": 64,
    "transformer_impl": "local",
}


@pytest.fixture(scope="module")
def model_parallel():
    with single_process_group():
        parallel_state.initialize_model_parallel()
        tensor_parallel.model_parallel_cuda_manual_seed(0)
        yield
        parallel_state.destroy_model_parallel()


def _model() -> torch.nn.Module:
    config = from_dict(Config, {"model": MODEL, "data": {"datasets": [{"prefix": "unused", "weight": 1.0}]}})
    torch.manual_seed(0)
    return build_model(config, mapping.transformer_config(config))[0]


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.arange(24).reshape(2, 12) * 7 % 256
    return model(ids, torch.arange(12).expand(2, 12), None).detach()


@pytest.mark.parametrize(
    "targets", [["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"], ["linear_fc1"]]
)
def test_adapters_start_as_no_change_and_merge_exactly(model_parallel, targets):
    model = _model()
    base = _logits(model)
    lora = LoraConfig(rank=4, alpha=8.0, targets=targets)
    count = add_adapters(model, lora, seed=3)
    per_layer = {
        "linear_qkv": 4 * 64 + 128 * 4,
        "linear_proj": 4 * 64 + 64 * 4,
        "linear_fc1": 4 * 64 + 192 * 4,
        "linear_fc2": 4 * 96 + 64 * 4,
    }
    assert count == 2 * sum(per_layer[t] for t in targets)
    assert torch.equal(_logits(model), base), "B starts at zero: the model must be unchanged"
    generator = torch.Generator().manual_seed(0)
    for layer in model.decoder.layers:
        for adapter in layer.lora.by_target.values():
            adapter.b.data = torch.randn(adapter.b.shape, generator=generator) * 0.05
    adapted = _logits(model)
    assert (adapted - base).abs().max() > 1e-2
    untouched = {n: p.clone() for n, p in model.named_parameters() if not any(t in n for t in targets)}
    merge_adapters(model)
    assert not has_adapters(model) and not any("lora" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(_logits(model), adapted, rtol=1e-5, atol=1e-5)
    for name, value in untouched.items():
        assert torch.equal(dict(model.named_parameters())[name], value), name


def test_adapters_draw_the_same_matrices_for_the_same_seed(model_parallel):
    first, second = _model(), _model()
    add_adapters(first, LoraConfig(rank=2), seed=5)
    add_adapters(second, LoraConfig(rank=2), seed=5)
    a_first = [p for n, p in first.named_parameters() if n.endswith(".a")]
    a_second = [p for n, p in second.named_parameters() if n.endswith(".a")]
    assert len(a_first) == 8 and all(torch.equal(x, y) for x, y in zip(a_first, a_second))
    assert not torch.equal(a_first[0], a_first[1]), "every layer and target draws its own A"


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"layers": "all", "lora": {}}, "set train.layers: none"),
        ({"layers": "none", "lora": {"rank": 0}}, "lora.rank must be at least 1"),
        ({"layers": "none", "lora": {"alpha": 0}}, "lora.alpha must be above 0"),
        ({"layers": "none", "lora": {"dropout": 1.0}}, "lora.dropout must be below 1"),
        ({"layers": "none", "lora": {"targets": []}}, "lora.targets is empty"),
        ({"layers": "none", "lora": {"targets": ["linear_qkv", "linear_qkv"]}}, "names a layer twice"),
        ({"layers": "none", "lora": {"targets": ["q_proj"]}}, "'q_proj' is not one of"),
    ],
)
def test_bad_lora_settings_are_refused(train, message):
    with pytest.raises(UserError, match=message):
        from_dict(TrainableConfig, train, "train")


def test_a_lora_stage_under_transformer_engine_is_refused_before_any_stage_runs(monkeypatch):
    from megacpt.training.stages import resolve_stages

    monkeypatch.setattr("megacpt.model.builder.transformer_engine_available", lambda: True)
    lora_stage = {"name": "lora", "steps": 1, "train": {"layers": "none", "lora": {}}}
    config = from_dict(
        Config,
        {
            "model": {k: v for k, v in MODEL.items() if k != "transformer_impl"},
            "data": {"datasets": [{"prefix": "unused", "weight": 1.0}]},
            "training": {"train_steps": 2},
            "schedule": {"stages": [{"name": "first", "steps": 1}, lora_stage]},
        },
    )
    with pytest.raises(UserError, match="schedule stage 1 .*need Megatron's local linear layers"):
        resolve_stages(config)
