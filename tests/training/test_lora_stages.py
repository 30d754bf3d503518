"""LoRA stages: only adapters train, TP2 computes what TP1 does, checkpoints resume exactly at
another layout, and the stage's end merges the adapters into plain weights.

Every run starts from one random tiny model (a step-0 checkpoint) and trains one LoRA stage of
4 steps on all four linear layers of every transformer layer, at a high LR so that the adapters
move far from their initial (zero) update.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.helpers import CORPORA, run_training, tiny_config, train_losses, write_byte_dataset

pytestmark = pytest.mark.multiproc

STEPS = 4
TP2_PP2_DP2 = {
    "tensor_model_parallel_size": 2,
    "pipeline_model_parallel_size": 2,
    "use_distributed_optimizer": True,
    "overlap_grad_reduce": True,
    "overlap_param_gather": True,
}
TARGETS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
LORA_STAGE = {
    "name": "lora",
    "steps": STEPS,
    "train": {
        "input_embeddings": "none",
        "output_layer": "none",
        "layers": "none",
        "lora": {"rank": 4, "alpha": 8.0},
    },
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    data = write_byte_dataset(root / "en_bytes", CORPORA / "en" / "wikitext2_valid.jsonl")
    train_losses(tiny_config(data, root / "init", training={"train_steps": 0}), 1)
    pretrained = root / "init" / "checkpoints" / "iter_0000000"

    def config(
        name: str, parallel: dict | None = None, then: list | None = None, **checkpoint: object
    ) -> dict:
        """A run of the LoRA stage (and the stages ``then``) from the step-0 model."""
        stages = [LORA_STAGE, *(then or [])]
        cfg = tiny_config(
            data,
            root / name,
            parallel=parallel or {},
            training={"train_steps": sum(s["steps"] for s in stages)},
            checkpoint={"pretrained": str(pretrained), **checkpoint},
        )
        cfg["schedule"] = {"stages": stages}
        return cfg

    return root, config, pretrained


def _weights(checkpoint: Path, out: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a checkpoint (no optimizer state), by global key."""
    dcp_to_torch_save(checkpoint, out)
    loaded = torch.load(out, weights_only=False).items()
    return {k: v for k, v in loaded if isinstance(v, torch.Tensor) and not k.startswith("optimizer")}


def _assert_close(losses: list[float], reference: list[float], rel: float = 1e-5) -> None:
    assert len(losses) == len(reference)
    for step, (got, want) in enumerate(zip(losses, reference), start=1):
        assert abs(got - want) <= rel * abs(want), f"step {step}: {got} vs {want}"


def test_a_lora_stage_trains_its_adapters_alone_and_ends_with_them_merged(setup, tmp_path):
    root, config, pretrained = setup
    # The next stage (every parameter, one step) starts from the merged weights.
    losses = train_losses(config("tp1", then=[{"name": "after", "steps": 1}]), 1)
    assert len(losses) == STEPS + 1 and losses[STEPS - 1] < losses[0]
    run = root / "tp1"
    counts = [
        r
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "trainable_params" in r
    ]
    assert counts[1]["frozen_params"] == 0 and not any(
        "lora" in k for k in _weights(run / "checkpoints" / f"iter_{STEPS + 1:07d}", tmp_path / "next.pt")
    )
    # rank 4 on 4 layers: qkv (4x64 + 192x4) + proj (4x64 + 64x4) + fc1 (4x64 + 256x4) + fc2 (4x128 + 64x4)
    assert counts[0]["trainable_params"] == 4 * (
        4 * 64 + 192 * 4 + 4 * 64 + 64 * 4 + 4 * 64 + 256 * 4 + 4 * 128 + 64 * 4
    )
    end = run / "checkpoints" / f"iter_{STEPS:07d}"
    meta = json.loads((end / "megacpt.json").read_text())
    assert meta["weights_only"] and "lora" not in meta
    before, after = _weights(pretrained, tmp_path / "before.pt"), _weights(end, tmp_path / "after.pt")
    assert set(after) == set(before), "the stage's end checkpoint holds the plain model's tensors only"
    for key, value in before.items():
        if any(target in key for target in TARGETS) and "layer_norm" not in key:
            assert not torch.equal(after[key], value), f"{key}: the merged update is missing"
        else:
            assert torch.equal(after[key], value), f"{key} changed, but the stage trains only adapters"


def test_tp2_equals_tp1_and_the_merged_weights_agree(setup, tmp_path):
    root, config, _ = setup
    reference = train_losses(config("tp1_ref"), 1)
    layout = {"tensor_model_parallel_size": 2, "sequence_parallel": True}
    _assert_close(train_losses(config("tp2_sp", layout), 2), reference)
    _assert_close(train_losses(config("tp2", {"tensor_model_parallel_size": 2}), 2), reference)
    one = _weights(root / "tp1_ref" / "checkpoints" / f"iter_{STEPS:07d}", tmp_path / "tp1.pt")
    two = _weights(root / "tp2" / "checkpoints" / f"iter_{STEPS:07d}", tmp_path / "tp2.pt")
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_a_mid_stage_checkpoint_resumes_exactly_at_another_layout_and_only_merged_ones_leave(setup, tmp_path):
    root, config, _ = setup
    # TP2 PP2 DP2, the distributed optimizer with overlapped gathers: every shard kind and replica
    full = train_losses(config("tp2_pp2_dp2", TP2_PP2_DP2, save_interval=2), 8)
    mid = root / "tp2_pp2_dp2" / "checkpoints" / "iter_0000002"
    assert json.loads((mid / "megacpt.json").read_text())["lora"]["rank"] == 4

    resumed = config("resumed_tp1", {"use_distributed_optimizer": True})
    ckpt_dir = root / "resumed_tp1" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    shutil.copytree(mid, ckpt_dir / mid.name)
    (ckpt_dir / "latest").write_text(mid.name)
    _assert_close(train_losses(resumed, 1), full[2:])

    # An unmerged checkpoint is no model: starting a run from it or exporting it is refused.
    refused = run_training(config("from_mid", pretrained=str(mid)), 1)
    assert refused.returncode != 0 and "holds its adapters unmerged" in refused.stderr
    from megacpt.convert.megatron_to_hf import convert_megatron_to_hf
    from megacpt.errors import UserError

    with pytest.raises(UserError, match="holds its adapters unmerged"):
        convert_megatron_to_hf(mid, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
