"""Stage schedules: the presets of the published recipes, and resolving a config into concrete stages.

Presets (stage budgets are shares of ``training.train_steps``; LR and data come from the config):

- ``swallow``: one stage training everything, with a re-warmup (Swallow, Llama 2 -> Japanese).
- ``eeve``: EEVE's seven stages of progressive unfreezing (SOLAR / Phi-2 -> Korean): new input
  rows; new output rows; both; all output rows; new input rows + all output rows; everything;
  transformer layers only. The published order is unconfirmed: each stage is plain config.
- ``redwhale``: embeddings and head, then odd layers, then even layers, then everything (RedWhale).

A schedule with neither a preset nor stages is one stage of ``training.train_steps`` that trains
everything, which is what a plain (pre)training run is.

With tied embeddings (``model.tie_embeddings``) input and output rows are one matrix. EEVE's stages
that train them apart are folded as its paper says: stages 1 and 2 into 3 (new rows), stage 5 into
4 (all rows), each fold adding its budget to the stage it joins (``TIED_FOLDS``). An explicit stage
that gives input and output rows different selections on a tied model is refused.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from megacpt.config.loader import from_dict
from megacpt.config.schema import Config, DatasetEntry, OptimizerConfig, Preset, StageConfig, TrainableConfig
from megacpt.errors import UserError

_NOTHING = {"input_embeddings": "none", "output_layer": "none", "layers": "none"}
_EVERYTHING = {"input_embeddings": "all", "output_layer": "all", "layers": "all", "norms": True}

PRESETS: dict[Preset, list[dict]] = {
    "swallow": [{"name": "continual-pretraining", "share": 1.0, "train": _EVERYTHING}],
    "eeve": [
        {"name": "1-new-input-rows", "train": {**_NOTHING, "input_embeddings": "new"}},
        {"name": "2-new-output-rows", "train": {**_NOTHING, "output_layer": "new"}},
        {
            "name": "3-new-input-and-output-rows",
            "train": {**_NOTHING, "input_embeddings": "new", "output_layer": "new"},
        },
        {"name": "4-all-output-rows", "train": {**_NOTHING, "output_layer": "all"}},
        {
            "name": "5-new-input-and-all-output-rows",
            "train": {**_NOTHING, "input_embeddings": "new", "output_layer": "all"},
        },
        {"name": "6-all-parameters", "train": _EVERYTHING},
        {"name": "7-transformer-layers", "train": {**_NOTHING, "layers": "all", "norms": True}},
    ],
    "redwhale": [
        {
            "name": "1-embeddings-and-head",
            "train": {**_NOTHING, "input_embeddings": "all", "output_layer": "all"},
        },
        {"name": "2-odd-layers", "train": {**_NOTHING, "layers": "odd"}},
        {"name": "3-even-layers", "train": {**_NOTHING, "layers": "even"}},
        {"name": "4-all-parameters", "train": _EVERYTHING},
    ],
}


# preset -> {stage folded away for tied embeddings: the stage that takes its budget}
TIED_FOLDS: dict[str, dict[str, str]] = {
    "eeve": {
        "1-new-input-rows": "3-new-input-and-output-rows",
        "2-new-output-rows": "3-new-input-and-output-rows",
        "5-new-input-and-all-output-rows": "4-all-output-rows",
    }
}


@dataclass(frozen=True)
class Stage:
    """A stage resolved against the config: a number of steps, and everything it needs."""

    index: int
    name: str
    steps: int
    train: TrainableConfig
    optimizer: OptimizerConfig
    datasets: tuple[DatasetEntry, ...]
    mixture_file: str | None
    reset_optimizer: bool


# What ``schedule.stages`` may change in a preset's stage, found by name; what a stage trains and
# whether it resets the optimizer belong to the preset (spell the stages out to change them).
_TUNABLE = (
    "steps",
    "tokens",
    "share",
    "optimizer",
    "datasets",
    "mixture_file",
)
_BUDGET = ("steps", "tokens", "share")


def _fold_for_tied(name: str, configs: list[StageConfig]) -> list[StageConfig]:
    """The preset's stages with those that train input and output rows apart folded (``TIED_FOLDS``)."""
    folds = TIED_FOLDS.get(name, {})
    extra: dict[str, float] = {}
    for stage in configs:
        if stage.name in folds:
            extra[folds[stage.name]] = extra.get(folds[stage.name], 0.0) + (stage.share or 0.0)
    return [
        dataclasses.replace(
            stage, share=(stage.share or 0.0) + extra.get(stage.name, 0.0), train=_one_matrix(stage.train)
        )
        for stage in configs
        if stage.name not in folds
    ]


def _one_matrix(train: TrainableConfig) -> TrainableConfig:
    """A preset stage's row selection for tied embeddings: the union of its input and output rows."""
    chosen = {train.input_embeddings, train.output_layer} - {"none"}
    rows: Literal["none", "new", "all"] = "new" if chosen == {"new"} else "all" if chosen else "none"
    return dataclasses.replace(train, input_embeddings=rows, output_layer=rows)


def _preset_stages(name: Preset, overrides: list[StageConfig], tied: bool) -> list[StageConfig]:
    """The preset's stages (equal shares of ``training.train_steps``; folded for ``tied``
    embeddings), adjusted by ``overrides``."""
    stages = PRESETS[name]
    share = 1.0 / len(stages)
    configs = [
        from_dict(StageConfig, {"share": share, **stage}, f"schedule.preset {name}") for stage in stages
    ]
    if tied:
        configs = _fold_for_tied(name, configs)
    by_name = {stage.name: i for i, stage in enumerate(configs)}
    for override in overrides:
        folded = TIED_FOLDS.get(name, {}).get(override.name) if tied else None
        if folded is not None:
            raise UserError(
                f"schedule.stages: {override.name!r} is folded into {folded!r} because model.tie_embeddings "
                "is true (input and output rows are one matrix); adjust that stage instead"
            )
        if override.name not in by_name:
            raise UserError(
                f"schedule.stages: {override.name!r} is not a stage of preset {name} "
                f"(its stages: {', '.join(by_name)})"
            )
        if override.train != TrainableConfig() or not override.reset_optimizer:
            raise UserError(
                f"schedule.stages: {override.name!r} may only change {', '.join(_TUNABLE)} of preset {name}'s "
                "stage; to change what it trains, give the stages in full without a preset"
            )
        changes = {k: getattr(override, k) for k in _TUNABLE if getattr(override, k) is not None}
        if any(k in changes for k in _BUDGET):
            changes = {**dict.fromkeys(_BUDGET), **changes}
        i = by_name[override.name]
        configs[i] = dataclasses.replace(configs[i], **changes)
    return configs


def _steps(stage: StageConfig, config: Config, where: str, share_before: float, allow_empty: bool) -> int:
    given = [k for k in ("steps", "tokens", "share") if getattr(stage, k) is not None]
    if len(given) != 1:
        raise UserError(
            f"{where}: give exactly one of steps, tokens or share (got {', '.join(given) or 'none'})"
        )
    if stage.steps is not None:
        steps = stage.steps
    elif stage.tokens is not None:
        steps = math.ceil(stage.tokens / (config.training.global_batch_size * config.data.seq_length))
    else:
        # Cumulative rounding: shares that add up to 1 give stages that add up to train_steps.
        assert stage.share is not None
        total = config.training.train_steps
        steps = round((share_before + stage.share) * total) - round(share_before * total)
    if steps < 1 and not (allow_empty and steps == 0):
        raise UserError(f"{where}: the stage has no steps ({steps})")
    return steps


def trains_anything(train: TrainableConfig) -> bool:
    return (
        train.input_embeddings != "none"
        or train.output_layer != "none"
        or train.layers not in ("none", [])
        or train.norms
        or train.lora is not None
    )


def _check_lora_spec(config: Config, where: str) -> None:
    """LoRA adapters wrap Megatron's local linear layers: refused under Transformer Engine before
    any stage runs (not hours later, when the LoRA stage starts)."""
    from megacpt.model.builder import use_transformer_engine  # torch and Megatron: not at import time

    if use_transformer_engine(config):
        raise UserError(
            f"{where}: LoRA adapters need Megatron's local linear layers: set model.transformer_impl: local"
        )


def _check_trainable(train: TrainableConfig, config: Config, where: str) -> None:
    if not trains_anything(train):
        raise UserError(f"{where}: the stage trains nothing (every parameter group is 'none')")
    if config.model.tie_embeddings and train.input_embeddings != train.output_layer:
        raise UserError(
            f"{where}: trains input rows '{train.input_embeddings}' and output rows '{train.output_layer}', but "
            "model.tie_embeddings makes them one matrix; give both the same selection, or untie the model "
            "(tools/resize_embeddings.py --untie-embeddings)"
        )
    rows = {train.input_embeddings, train.output_layer} & {"new", "old"}
    old = config.schedule.old_vocab_size
    if rows and old is None:
        raise UserError(
            f"{where}: 'new'/'old' rows need schedule.old_vocab_size (the vocabulary size before expansion)"
        )
    if rows and old is not None and not 0 < old < config.model.vocab_size:
        raise UserError(
            f"schedule.old_vocab_size {old} must be between 0 and model.vocab_size {config.model.vocab_size}"
        )
    if train.lora is not None:
        _check_lora_spec(config, where)
    if isinstance(train.layers, list):
        bad = [i for i in train.layers if not 0 <= i < config.model.num_layers]
        if bad:
            raise UserError(f"{where}: layers {bad} out of range for {config.model.num_layers} layers")


def resolve_stages(config: Config) -> list[Stage]:
    """The concrete stages of this run, validated."""
    schedule = config.schedule
    if schedule.preset:
        configs = _preset_stages(schedule.preset, schedule.stages, config.model.tie_embeddings)
    elif schedule.stages:
        configs = schedule.stages
    else:
        configs = [StageConfig(name="train", steps=config.training.train_steps)]
    stages: list[Stage] = []
    share_before = 0.0
    for index, stage in enumerate(configs):
        where = f"schedule stage {index} ({stage.name or 'unnamed'})"
        _check_trainable(stage.train, config, where)
        optimizer = stage.optimizer or config.optimizer
        if not stage.reset_optimizer and (index == 0 or stages[-1].train != stage.train):
            raise UserError(
                f"{where}: reset_optimizer false needs a previous stage that trains the same parameters"
            )
        if not stage.reset_optimizer and stage.train.lora is not None:
            raise UserError(
                f"{where}: reset_optimizer false after a LoRA stage: its adapters are merged into the "
                "weights at its end, so no optimizer state carries over"
            )
        # A run of 0 steps without a schedule just writes its initial weights (step 0 checkpoint).
        steps = _steps(
            stage, config, where, share_before, allow_empty=not (schedule.preset or schedule.stages)
        )
        share_before += stage.share or 0.0
        if stage.datasets is not None:
            datasets, mixture_file = tuple(stage.datasets), None
        elif stage.mixture_file:
            datasets, mixture_file = (), stage.mixture_file
        else:
            datasets, mixture_file = tuple(config.data.datasets), config.data.mixture_file
        stages.append(
            Stage(
                index=index,
                name=stage.name or f"stage-{index + 1}",
                steps=steps,
                train=stage.train,
                optimizer=optimizer,
                datasets=datasets,
                mixture_file=mixture_file,
                reset_optimizer=stage.reset_optimizer,
            )
        )
    return stages


def budget_note(stages: list[Stage], config: Config) -> str | None:
    """A one-line note when the stages' budgets do not add up to ``training.train_steps`` (the run
    then lasts as long as its stages, e.g. after one preset stage is given its own steps)."""
    total = sum(s.steps for s in stages)
    if total == config.training.train_steps:
        return None
    budgets = " + ".join(str(s.steps) for s in stages)
    return (
        f"note: the stages add up to {budgets} = {total} steps, not training.train_steps "
        f"({config.training.train_steps}): the run lasts {total} steps"
    )
