"""A checkpoint holds the weights of its step, also when the distributed optimizer overlaps its
parameter all-gather with the next forward (which a save must not wait for)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.helpers import CORPORA, tiny_config, train_losses, write_byte_dataset

pytestmark = pytest.mark.multiproc


def _weights(checkpoint: Path, out: Path) -> dict[str, torch.Tensor]:
    dcp_to_torch_save(checkpoint, out)
    loaded = torch.load(out, weights_only=False).items()
    return {k: v for k, v in loaded if isinstance(v, torch.Tensor) and not k.startswith("optimizer")}


def test_saved_weights_do_not_lag_a_step_with_overlapped_parameter_gathers(tmp_path):
    data = write_byte_dataset(tmp_path / "en", CORPORA / "en" / "wikitext2_valid.jsonl", max_docs=200)
    runs = {}
    for overlap in (False, True):
        parallel = {
            "use_distributed_optimizer": True,
            "overlap_param_gather": overlap,
            "overlap_grad_reduce": overlap,
        }
        config = tiny_config(
            data, tmp_path / f"overlap_{overlap}", parallel=parallel, training={"train_steps": 3}
        )
        train_losses(config, 2)  # DP2: each rank updates half of every bucket, then gathers the rest
        runs[overlap] = _weights(
            tmp_path / f"overlap_{overlap}" / "checkpoints" / "iter_0000003", tmp_path / f"{overlap}.pt"
        )
    assert runs[True].keys() == runs[False].keys()
    for key, value in runs[False].items():
        torch.testing.assert_close(runs[True][key], value, rtol=1e-6, atol=1e-7, msg=key)
