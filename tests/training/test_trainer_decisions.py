"""The Trainer's own decisions, built in this process (a world of one, as ``megacpt train`` without
torchrun): a non-finite loss skips the update and enough of them in a row stop the run; checkpoints
and validations fall on the steps the config names; a stage ends with a checkpoint and the next
stage starts from it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from megacpt.config import load_config
from tests.helpers import CORPORA, tiny_config, write_byte_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Short documents (KLUE's, ~600 bytes): validation scores whole documents, and eight WikiText
    articles took 2 minutes of this file's time at every validation."""
    return write_byte_dataset(
        tmp_path_factory.mktemp("data") / "ko", CORPORA / "ko" / "klue_dev.jsonl", max_docs=400
    )


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Any]:
    """Build a Trainer from a config dict in this process; closed after the test."""
    from megacpt.training.trainer import Trainer

    built: list[Trainer] = []

    def make(config: dict) -> Trainer:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        built.append(Trainer(load_config(path, [])))
        return built[-1]

    yield make
    for trainer in built:
        trainer.close(wait_for_others=False)


def _params(trainer: Any) -> list[Any]:
    return [p.detach().clone() for model in trainer.current.models for p in model.parameters()]


def test_a_nonfinite_loss_skips_the_update_and_enough_in_a_row_stop_the_run(
    dataset: str, tmp_path: Path, build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from megacpt.training.trainer import NonFiniteLossError

    config = tiny_config(dataset, tmp_path / "run", training={"train_steps": 8, "exit_on_nonfinite_steps": 2})
    trainer = build({**config, "checkpoint": {"save_at_end": False}})
    real = trainer._run_schedule
    forced = iter([None, math.nan, None, None, math.nan, math.nan, None])  # None: the real loss

    def schedule(*args: Any, **kwargs: Any) -> float:
        loss, wanted = real(*args, **kwargs), next(forced)
        return loss if wanted is None else wanted

    monkeypatch.setattr(trainer, "_run_schedule", schedule)
    first = trainer.train_step()
    assert math.isfinite(first["loss"]) and first["grad_norm"] is not None
    before, lr = _params(trainer), trainer.current.optimizer.param_groups[0]["lr"]
    skipped = trainer.train_step()
    assert math.isnan(skipped["loss"]) and skipped["grad_norm"] is None and skipped["skipped_steps"] == 1
    assert all((a == b).all() for a, b in zip(before, _params(trainer), strict=True))  # no update
    assert trainer.current.optimizer.param_groups[0]["lr"] == lr  # nor a scheduler step
    updated = trainer.train_step()  # one finite loss clears the count
    assert updated["grad_norm"] is not None and not all(
        (a == b).all() for a, b in zip(before, _params(trainer), strict=True)
    )
    with pytest.raises(NonFiniteLossError, match="2 non-finite losses in a row at step 3; stopping"):
        trainer.train()  # steps 1..3 of the run: finite, nan, nan
    assert trainer.state.skipped_steps == 3
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_saves_validations_and_the_stage_switch_fall_where_the_config_says(
    dataset: str, tmp_path: Path, build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from megacpt.training.trainer import Trainer

    config = tiny_config(
        dataset,
        tmp_path / "run",
        training={
            "train_steps": 5,
            "eval_interval": 4,
            "eval_at_start": True,
            "eval_at_stage_end": True,
            "eval_steps": 1,
        },
    )
    config["checkpoint"] = {"save_interval": 2}
    config["schedule"] = {"stages": [{"name": "first", "steps": 3}, {"name": "second", "steps": 2}]}
    saved: list[int] = []
    validated: list[int] = []
    entered: list[tuple[int, str | None]] = []
    save, validate, enter = Trainer.save, Trainer._validate, Trainer._enter_stage

    def spy_save(self: Trainer) -> Path:
        saved.append(self.state.step)
        return save(self)

    def spy_validate(self: Trainer) -> None:
        validated.append(self.state.step)
        validate(self)

    def spy_enter(self: Trainer, index: int, **kwargs: Any) -> None:
        entered.append((index, kwargs.get("init_from") and Path(kwargs["init_from"]).name))
        enter(self, index, **kwargs)

    monkeypatch.setattr(Trainer, "save", spy_save)
    monkeypatch.setattr(Trainer, "_validate", spy_validate)
    monkeypatch.setattr(Trainer, "_enter_stage", spy_enter)
    trainer = build(config)
    state = trainer.train()
    assert state.step == 5 and state.stage == 1
    assert saved == [2, 3, 4, 5]  # the interval, the first stage's end, the interval, the run's end
    assert validated == [0, 3, 4, 5]  # the start, the stage's end, the interval, the run's end
    assert entered == [(0, None), (1, "iter_0000003")]  # the second stage starts from the first's end
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.is_dir())
    assert checkpoints == [f"iter_000000{s}" for s in (2, 3, 4, 5)]
