"""Tier 1: stage schedules resolve, presets load, and bad schedules are clear errors."""

from __future__ import annotations

import re

import pytest

from megacpt.config import load_config
from megacpt.errors import UserError
from megacpt.training.stages import PRESETS, resolve_stages

BASE = [
    "model.vocab_size=300",
    "schedule.old_vocab_size=256",
    "training.train_steps=70",
    "model.num_layers=4",
]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_resolves(preset):
    stages = resolve_stages(load_config(None, [*BASE, f"schedule.preset={preset}"]))
    assert [s.name for s in stages] == [s["name"] for s in PRESETS[preset]]
    assert sum(s.steps for s in stages) == 70
    assert all(s.optimizer.lr == load_config(None, BASE).optimizer.lr for s in stages)


def test_eeve_is_progressive_unfreezing():
    stages = resolve_stages(load_config(None, [*BASE, "schedule.preset=eeve"]))
    assert (stages[0].train.input_embeddings, stages[0].train.output_layer, stages[0].train.layers) == (
        "new",
        "none",
        "none",
    )
    assert stages[5].train.layers == "all" and stages[5].train.input_embeddings == "all"
    assert (stages[6].train.input_embeddings, stages[6].train.layers) == ("none", "all")


def test_explicit_stages_with_budgets_and_overrides():
    config = load_config(
        None,
        [
            *BASE,
            "data.seq_length=16",
            "training.global_batch_size=4",
            "schedule.stages=[{name: warm, tokens: 100, optimizer: {lr: 1.0e-5, min_lr: 1.0e-6}, train: {input_embeddings: new, "
            "output_layer: none, layers: none}}, {name: rest, steps: 3, train: {layers: [0, 2]}}]",
        ],
    )
    warm, rest = resolve_stages(config)
    assert warm.steps == 2 and warm.optimizer.lr == 1e-5  # ceil(100 / (4 x 16))
    assert rest.steps == 3 and rest.train.layers == [0, 2] and rest.optimizer.lr == config.optimizer.lr


def test_a_stage_optimizer_gives_what_differs_from_the_runs():
    config = load_config(
        None,
        [
            *BASE,
            "optimizer.clip_grad=0.5",
            "schedule.stages=[{name: a, steps: 1, optimizer: {lr: 1.0e-3, weight_decay: 0.0, warmup_steps: 2}},"
            " {name: b, steps: 1}]",
        ],
    )
    a, b = resolve_stages(config)
    assert (a.optimizer.lr, a.optimizer.weight_decay, a.optimizer.warmup_steps) == (1e-3, 0.0, 2)
    assert a.optimizer.clip_grad == 0.5 and a.optimizer.min_lr == config.optimizer.min_lr  # the run's
    assert b.optimizer == config.optimizer
    with pytest.raises(
        UserError,
        match=r"unknown config key 'schedule\.stages\[0\]\.optimizer\.warmup' \(did you mean 'warmup_steps'\?\)",
    ):
        load_config(None, [*BASE, "schedule.stages=[{name: a, steps: 1, optimizer: {warmup: 2}}]"])
    with pytest.raises(UserError, match=r"unknown config key 'schedule\.stages\[0\]\.lr'"):
        load_config(None, [*BASE, "schedule.stages=[{name: a, steps: 1, lr: 1.0e-3}]"])


def test_no_schedule_is_one_stage_training_everything():
    (stage,) = resolve_stages(load_config(None, ["training.train_steps=5"]))
    assert stage.steps == 5 and stage.train.layers == "all" and stage.train.input_embeddings == "all"


@pytest.mark.parametrize(
    "stages,message",
    [
        (
            "[{steps: 1, train: {input_embedding: new}}]",
            "unknown config key 'schedule.stages[0].train.input_embedding'",
        ),
        (
            "[{steps: 1, train: {layers: sideways}}]",
            "schedule.stages[0].train.layers: invalid value 'sideways' (expected one of 'none', 'all', 'odd', 'even' or a list of int)",
        ),
        ("[{steps: 1, train: {input_embeddings: none, output_layer: none, layers: none}}]", "trains nothing"),
        ("[{steps: 1, train: {layers: [7]}}]", r"layers \[7\] out of range"),
        ("[{train: {}}]", "give exactly one of steps, tokens or share"),
        ("[{steps: 1, share: 0.5}]", "give exactly one of steps, tokens or share"),
        ("[{steps: 1, reset_optimizer: false}]", "reset_optimizer false needs a previous stage"),
    ],
)
def test_bad_stages_are_clear_errors(stages, message):
    with pytest.raises(UserError, match=message if "\\" in message else re.escape(message)):
        resolve_stages(load_config(None, [*BASE, f"schedule.stages={stages}"]))


def test_new_rows_need_the_old_vocabulary_size():
    with pytest.raises(UserError, match="need schedule.old_vocab_size"):
        resolve_stages(load_config(None, ["schedule.preset=eeve", "schedule.old_vocab_size=null"]))


def test_a_preset_stage_is_adjusted_by_name():
    eeve = ["schedule.preset=eeve", "schedule.old_vocab_size=200", "training.train_steps=70"]
    stages = resolve_stages(
        load_config(
            None,
            [*BASE, *eeve, "schedule.stages=[{name: 6-all-parameters, optimizer: {lr: 5e-4}, steps: 4}]"],
        )
    )
    assert [s.steps for s in stages] == [10, 10, 10, 10, 10, 4, 10]
    assert (
        stages[5].optimizer.lr == 5e-4
        and stages[5].train == resolve_stages(load_config(None, [*BASE, *eeve]))[5].train
    )
    assert {s.optimizer.lr for i, s in enumerate(stages) if i != 5} == {load_config(None, BASE).optimizer.lr}
    with pytest.raises(UserError, match="'6-all' is not a stage of preset eeve"):
        resolve_stages(
            load_config(None, [*BASE, *eeve, "schedule.stages=[{name: 6-all, optimizer: {lr: 1e-4}}]"])
        )
    with pytest.raises(UserError, match="may only change steps, tokens, share"):
        resolve_stages(
            load_config(
                None, [*BASE, *eeve, "schedule.stages=[{name: 6-all-parameters, train: {layers: odd}}]"]
            )
        )


def test_tied_embeddings_fold_eeve_as_its_paper_says():
    tied = [*BASE, "model.tie_embeddings=true", "schedule.preset=eeve"]
    stages = resolve_stages(load_config(None, tied))
    assert [(s.name, s.steps) for s in stages] == [
        ("3-new-input-and-output-rows", 30),  # stages 1, 2 and 3: three sevenths
        ("4-all-output-rows", 20),  # stages 4 and 5: two sevenths
        ("6-all-parameters", 10),
        ("7-transformer-layers", 10),
    ]
    rows = [(s.train.input_embeddings, s.train.output_layer) for s in stages]
    assert rows == [("new", "new"), ("all", "all"), ("all", "all"), ("none", "none")]
    adjusted = resolve_stages(
        load_config(
            None,
            [*tied, "schedule.stages=[{name: 4-all-output-rows, optimizer: {lr: 1.0e-5, min_lr: 1.0e-6}}]"],
        )
    )
    assert adjusted[1].optimizer.lr == 1e-5
    with pytest.raises(
        UserError, match=r"schedule\.stages\[0\]\.optimizer\.min_lr \(3e-05\) must not be above lr"
    ):
        load_config(None, [*tied, "schedule.stages=[{name: 4-all-output-rows, optimizer: {lr: 1.0e-5}}]"])
    with pytest.raises(UserError, match="'1-new-input-rows' is folded into '3-new-input-and-output-rows'"):
        resolve_stages(load_config(None, [*tied, "schedule.stages=[{name: 1-new-input-rows, steps: 3}]"]))
    assert len(resolve_stages(load_config(None, [*BASE, "schedule.preset=eeve"]))) == 7  # untied: all seven


def test_tied_embeddings_refuse_stages_that_train_input_and_output_apart():
    stage = "schedule.stages=[{name: in, steps: 2, train: {input_embeddings: new, output_layer: none, layers: none}}]"
    with pytest.raises(UserError, match="model.tie_embeddings makes them one matrix"):
        resolve_stages(load_config(None, [*BASE, "model.tie_embeddings=true", stage]))
    resolve_stages(load_config(None, [*BASE, stage]))  # untied: fine


def test_every_recipe_has_its_schedule_and_row_initialisation_under_one_name():
    from typing import get_args

    from megacpt.config.schema import Preset
    from megacpt.convert.methods import PRESETS as ROW_PRESETS
    from megacpt.training.stages import PRESETS as SCHEDULE_PRESETS

    assert list(SCHEDULE_PRESETS) == list(ROW_PRESETS) == list(get_args(Preset))
    with pytest.raises(
        UserError, match=r"schedule\.preset: 'eve' is not one of 'swallow', 'eeve', 'redwhale'"
    ):
        load_config(None, ["schedule.preset=eve"])
