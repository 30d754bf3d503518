"""Tier 1: checkpoints are data. Nothing in one runs code; damage is found and named in one line;
a damaged ``latest`` never restarts a run from step 0; a full disk leaves no half-written checkpoint."""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from megacpt.checkpoint import state as ckpt
from megacpt.checkpoint.meta import (
    LATEST,
    META,
    load_dcp_metadata,
    resume_checkpoint,
    verify_files,
)
from megacpt.config import load_config
from megacpt.config.validate import check_model_matches
from megacpt.errors import UserError
from megacpt.training.metrics import MetricsLogger
from megacpt.training.trainer import check_resumable


class _RunsCode:
    """Pickles as a call of ``os.system``: what a crafted checkpoint file would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _dcp_checkpoint(path: Path, extra: object = None) -> Path:
    state = {"weight": torch.arange(4096, dtype=torch.float32), "note": {"step": 3}}
    if extra is not None:
        state["extra"] = extra
    dcp.save(state, checkpoint_id=str(path), no_dist=True)
    (path / META).write_text(json.dumps({"model": {}, "vocab_size": 8}))
    return path


def test_a_crafted_metadata_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "ckpt"
    path.mkdir()
    (path / ".metadata").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UserError, match=r"refusing to read .*\.metadata: it names posix\.system"):
        load_dcp_metadata(path)
    assert not marker.exists()


def test_a_real_index_loads_and_damage_is_one_line(tmp_path: Path) -> None:
    path = _dcp_checkpoint(tmp_path / "ckpt")
    verify_files(path)
    assert "weight" in load_dcp_metadata(path).state_dict_metadata

    cut = _dcp_checkpoint(tmp_path / "cut")
    (cut / ".metadata").write_bytes((cut / ".metadata").read_bytes()[:100])
    with pytest.raises(UserError, match=r"\.metadata is corrupt"):
        verify_files(cut)

    short = _dcp_checkpoint(tmp_path / "short")
    data = next(short.glob("*.distcp"))
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(UserError, match=r"\.distcp is truncated: 1,000 bytes, its index needs"):
        verify_files(short)


def test_a_non_tensor_item_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _dcp_checkpoint(tmp_path / "ckpt", extra=_RunsCode(marker))
    with pytest.raises(UserError, match=r"refusing to load .*item extra .* is not plain data"):
        verify_files(path)
    assert not marker.exists()


def test_rng_states_load_as_plain_data_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt.dist, "get_rank", lambda: 0)
    marker = tmp_path / "ran"
    (tmp_path / "rng").mkdir()
    torch.save(_RunsCode(marker), tmp_path / "rng" / "rank_00000.pt")
    assert ckpt._restore_rng(tmp_path) is False
    assert not marker.exists()


def _fake_iteration(root: Path, step: int, complete: bool) -> Path:
    path = root / f"iter_{step:07d}"
    path.mkdir(parents=True)
    (path / META).write_text(json.dumps({"model": {}, "vocab_size": 8, "step": step}))
    if complete:
        (path / ".metadata").write_bytes(b"index")
    return path


def test_a_damaged_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    good = _fake_iteration(tmp_path, 2, complete=True)
    _fake_iteration(tmp_path, 4, complete=False)
    (tmp_path / LATEST).write_text("iter_0000004")
    path, note = resume_checkpoint(tmp_path)
    assert path == good and "iter_0000004, which is not a complete checkpoint" in note
    (tmp_path / LATEST).write_text("iter_0000009")  # names one that does not exist
    assert resume_checkpoint(tmp_path)[0] == good
    (tmp_path / LATEST).unlink()
    assert resume_checkpoint(tmp_path)[0] == good


def test_no_complete_checkpoint_left_refuses_rather_than_start_over(tmp_path: Path) -> None:
    _fake_iteration(tmp_path, 4, complete=False)
    (tmp_path / LATEST).write_text("iter_0000004")
    with pytest.raises(UserError, match="none remains"):
        resume_checkpoint(tmp_path)
    assert resume_checkpoint(tmp_path / "fresh") == (None, None)


def test_architecture_fields_are_checked_against_the_checkpoint() -> None:
    config = load_config(None, ["model.rotary_base=500000.0", "model.norm_epsilon=1e-6"])
    meta = {"model": {"rotary_base": 10000.0, "norm_epsilon": 1e-6, "num_layers": 2}}
    with pytest.raises(UserError, match=r"model\.rotary_base is 500000\.0 but ckpt was made with 10000\.0"):
        check_model_matches(config, meta, "ckpt")
    meta["model"]["rotary_base"] = 500000
    check_model_matches(config, meta, "ckpt")


@pytest.mark.parametrize(
    ("field", "resolved", "other"),
    [("kv_channels", 16, 32), ("ffn_hidden_size", 256, 128), ("num_query_groups", 4, 2)],
)
def test_derived_fields_are_compared_resolved(field: str, resolved: int, other: int) -> None:
    """hidden 64, 4 heads, the field unset: it is the checkpoint's resolved value, not a mismatch."""
    config = load_config(None, ["model.hidden_size=64", "model.num_attention_heads=4"])
    assert getattr(config.model, field) is None
    meta = {"model": {"hidden_size": 64, "num_attention_heads": 4, field: resolved}}
    check_model_matches(config, meta, "ckpt")
    meta["model"][field] = other
    with pytest.raises(UserError, match=rf"model\.{field} is {resolved} but ckpt was made with {other}"):
        check_model_matches(config, meta, "ckpt")


def test_resuming_with_the_other_optimizer_type_says_what_to_do(tmp_path: Path) -> None:
    config = load_config(None, ["parallel.use_distributed_optimizer=true"])
    with pytest.raises(UserError, match=r"holds the plain optimizer's state .* checkpoint\.pretrained="):
        check_resumable(config, {"model": {}, "distributed_optimizer": False}, tmp_path)


def test_a_full_disk_is_one_line_and_leaves_no_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(ckpt.dist, "barrier", lambda: None)

    def disk_full(_optimizer: object) -> None:
        (tmp_path / "iter_0000005.tmp" / "part").write_bytes(b"x")
        raise RuntimeError("worker failure") from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.optimizer_compat, "materialise_adam_state", disk_full)
    with pytest.raises(UserError, match=r"no space left on device while saving checkpoint .*iter_0000005"):
        ckpt.save_checkpoint(tmp_path, 5, [], None, None, {})
    assert list(tmp_path.iterdir()) == []


def test_metrics_after_a_resume_hold_each_step_once(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, enabled=True, tensorboard=False)
    for step in range(1, 6):
        logger.log(step, {"loss": 1.0 / step})
    logger.close()
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 6, "lo')  # the line a kill -9 cut short
    resumed = MetricsLogger(tmp_path, enabled=True, tensorboard=False)
    resumed.drop_after(3)
    resumed.log(4, {"loss": 0.3})
    resumed.close()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
