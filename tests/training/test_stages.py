"""Tier 2: every stage of every preset at TP2 PP2 DP2 with the distributed optimizer freezes bit for bit.

Each preset runs one step per stage through the real entry point; the checkpoint at each stage
end is compared, tensor by tensor and row by row, with the one the stage started from: frozen
parameters and vocabulary rows are bit-identical (also in the optimizer's main copy, with zero
Adam moments), and every trained one has changed. A run resumed mid-stage and between stages
reproduces the uninterrupted losses exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from megacpt.config.schema import TrainableConfig
from megacpt.training.stages import PRESETS
from tests.helpers import BYTE_VOCAB, CORPORA, tiny_config, train_losses, write_byte_dataset

pytestmark = pytest.mark.multiproc

LAYERS = 4
OLD_VOCAB = 100  # ids 100..255 play the "new" rows added by vocabulary expansion
TP2_PP2_DP2 = {
    "tensor_model_parallel_size": 2,
    "pipeline_model_parallel_size": 2,
    "use_distributed_optimizer": True,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    data = write_byte_dataset(root / "en_bytes", CORPORA / "en" / "wikitext2_valid.jsonl")
    init = tiny_config(data, root / "init", training={"train_steps": 0})
    init["model"]["num_layers"] = LAYERS
    train_losses(init, 1)
    pretrained = root / "init" / "checkpoints" / "iter_0000000"

    def config(name: str, parallel: dict, preset: str, steps: int, **checkpoint: object) -> dict:
        cfg = tiny_config(
            data,
            root / name,
            parallel=parallel,
            training={"train_steps": steps},
            checkpoint={"pretrained": str(pretrained), **checkpoint},
        )
        cfg["model"]["num_layers"] = LAYERS
        cfg["schedule"] = {"preset": preset, "old_vocab_size": OLD_VOCAB}
        return cfg

    return root, config, pretrained


def _load(checkpoint: Path, tmp: Path) -> dict[str, torch.Tensor]:
    out = tmp / f"{checkpoint.parent.parent.name}_{checkpoint.name}.pt"
    dcp_to_torch_save(checkpoint, out)
    return {k: v for k, v in torch.load(out, weights_only=False).items() if isinstance(v, torch.Tensor)}


def _trained_rows(selection: str) -> range:
    return {
        "none": range(0),
        "new": range(OLD_VOCAB, BYTE_VOCAB),
        "old": range(OLD_VOCAB),
        "all": range(BYTE_VOCAB),
    }[selection]


def _trained_layers(key: str, train: TrainableConfig) -> list[int]:
    norm = "layer_norm" in key or "layernorm" in key
    layers = {"all": range(LAYERS), "none": [], "even": range(0, LAYERS, 2), "odd": range(1, LAYERS, 2)}.get(
        train.layers, train.layers
    )  # type: ignore[call-overload]
    return list(range(LAYERS)) if norm and train.norms else list(layers)


def _check_stage(name: str, train: TrainableConfig, before: dict, after: dict) -> None:
    for key, old in before.items():
        if key.startswith("optimizer.") or key not in after:
            continue
        new = after[key]
        if key in ("embedding.word_embeddings.weight", "output_layer.weight", "output_layer.bias"):
            selection = train.input_embeddings if key.startswith("embedding") else train.output_layer
            trained = set(_trained_rows(selection))
            for row in range(old.shape[0]):
                same = torch.equal(old[row], new[row])
                assert same != (row in trained), (
                    f"{name}: {key} row {row} {'frozen row changed' if not same else 'did not train'}"
                )
            main, moment = (
                after.get(f"optimizer.state.param.{key}"),
                after.get(f"optimizer.state.exp_avg.{key}"),
            )
            if main is not None:
                frozen = [r for r in range(old.shape[0]) if r not in trained]
                assert torch.equal(main[frozen], old[frozen]), f"{name}: {key} main copy of frozen rows moved"
                assert not moment[frozen].any(), f"{name}: {key} Adam moments of frozen rows are not zero"
        elif key.startswith("decoder.layers."):
            trained = set(_trained_layers(key, train))
            for layer in range(LAYERS):
                same = torch.equal(old[layer], new[layer])
                assert same != (layer in trained), (
                    f"{name}: {key} layer {layer} {'changed' if not same else 'did not train'}"
                )
        elif key.startswith("decoder.final_layernorm"):
            assert torch.equal(old, new) != (train.layers == "all" or train.norms), f"{name}: {key}"
        else:
            raise AssertionError(f"unexpected checkpoint key {key}")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_stage_freezes_bit_for_bit_at_tp2_pp2_dp2(setup, tmp_path, preset):
    root, config, pretrained = setup
    stages = len(PRESETS[preset])
    train_losses(config(f"{preset}_tp2pp2dp2", TP2_PP2_DP2, preset, stages), 8)
    run = root / f"{preset}_tp2pp2dp2"
    plan = json.loads((run / "stages.json").read_text())
    assert len(plan) == stages and all(s["steps"] == 1 for s in plan)
    before = _load(pretrained, tmp_path)
    for index, stage in enumerate(plan, start=1):
        after = _load(run / "checkpoints" / f"iter_{index:07d}", tmp_path)
        _check_stage(stage["name"], TrainableConfig(**stage["train"]), before, after)
        before = after


def test_resume_mid_stage_and_between_stages_reproduces_losses(setup):
    root, config, _ = setup
    full = train_losses(config("redwhale_full", {}, "redwhale", 8, save_interval=3), 1)
    assert len(full) == 8
    for name, resume_at in (("mid_stage", 3), ("between_stages", 4)):
        resumed = config(f"redwhale_{name}", {}, "redwhale", 8)
        ckpt_dir = root / f"redwhale_{name}" / "checkpoints"
        ckpt_dir.mkdir(parents=True)
        source = root / "redwhale_full" / "checkpoints" / f"iter_{resume_at:07d}"
        shutil.copytree(source, ckpt_dir / source.name)
        (ckpt_dir / "latest").write_text(source.name)
        assert train_losses(resumed, 1) == full[resume_at:], name


def test_tied_eeve_folds_to_four_stages_that_freeze_bit_for_bit_at_tp2_pp2_dp2(setup, tmp_path):
    root = setup[0]
    data = str(root / "en_bytes")
    init = tiny_config(data, root / "tied_init", training={"train_steps": 0})
    init["model"].update(num_layers=LAYERS, tie_embeddings=True)
    train_losses(init, 1)
    pretrained = root / "tied_init" / "checkpoints" / "iter_0000000"
    cfg = tiny_config(
        data,
        root / "tied_eeve",
        parallel=TP2_PP2_DP2,
        training={"train_steps": 7},
        checkpoint={"pretrained": str(pretrained)},
    )
    cfg["model"].update(num_layers=LAYERS, tie_embeddings=True)
    cfg["schedule"] = {"preset": "eeve", "old_vocab_size": OLD_VOCAB}
    train_losses(cfg, 8)
    plan = json.loads((root / "tied_eeve" / "stages.json").read_text())
    assert [(s["name"], s["steps"]) for s in plan] == [
        ("3-new-input-and-output-rows", 3),
        ("4-all-output-rows", 2),
        ("6-all-parameters", 1),
        ("7-transformer-layers", 1),
    ]
    before, step = _load(pretrained, tmp_path), 0
    for stage in plan:
        step += stage["steps"]
        after = _load(root / "tied_eeve" / "checkpoints" / f"iter_{step:07d}", tmp_path)
        assert "output_layer.weight" not in after  # one matrix: the embedding
        _check_stage(stage["name"], TrainableConfig(**stage["train"]), before, after)
        before = after


PHI = {  # Phi-2's block: parallel attention/MLP from one LayerNorm, biases, partial RoPE, head bias
    "num_layers": LAYERS,
    "normalization": "LayerNorm",
    "activation": "gelu_tanh",
    "add_bias_linear": True,
    "add_qkv_bias": True,
    "rotary_percent": 0.5,
    "parallel_attention_mlp": True,
    "output_layer_bias": True,
}


def test_eeve_on_an_untied_phi_model_freezes_bit_for_bit_at_tp2_pp2_dp2(setup, tmp_path):
    """EEVE-Korean-2.8B's seven stages on Phi-2's architecture: stages 1 and 2 train the new input and
    the new output rows apart, and the LM-head bias follows the output rows."""
    root = setup[0]
    data = str(root / "en_bytes")
    init = tiny_config(data, root / "phi_init", training={"train_steps": 0})
    init["model"].update(PHI)
    train_losses(init, 1)
    pretrained = root / "phi_init" / "checkpoints" / "iter_0000000"
    cfg = tiny_config(
        data,
        root / "phi_eeve",
        parallel=TP2_PP2_DP2,
        training={"train_steps": 7},
        checkpoint={"pretrained": str(pretrained)},
    )
    cfg["model"].update(PHI)
    cfg["schedule"] = {"preset": "eeve", "old_vocab_size": OLD_VOCAB}
    train_losses(cfg, 8)
    plan = json.loads((root / "phi_eeve" / "stages.json").read_text())
    assert [s["name"] for s in plan] == [s["name"] for s in PRESETS["eeve"]]
    before = _load(pretrained, tmp_path)
    assert {"output_layer.bias", "decoder.layers.self_attention.linear_qkv.layer_norm_bias"} <= set(before)
    assert not any("linear_fc1.layer_norm" in key for key in before), "one norm per parallel block"
    for step, stage in enumerate(plan, start=1):
        after = _load(root / "phi_eeve" / "checkpoints" / f"iter_{step:07d}", tmp_path)
        _check_stage(stage["name"], TrainableConfig(**stage["train"]), before, after)
        before = after
