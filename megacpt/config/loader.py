"""Load a ``Config`` from YAML plus ``dotted.key=value`` overrides, strictly.

Unknown keys and values of the wrong type are a ``UserError`` naming the key, so that a typo in a
70B config fails on the laptop and not after the job finally gets its nodes. Override values are
parsed as YAML scalars (``1e-4``, ``true``, ``null``, ``[1, 2]``; ``megacpt.yamlfile``) and then type-checked against
the dataclass field. Relies only on ``dataclasses`` and ``typing`` introspection: the schema is
small and fixed, and a general library (OmegaConf, Hydra) would add a dependency and its own
override grammar for no gain here.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from megacpt.atomic import write_atomic
from megacpt.config.schema import Config
from megacpt.errors import UserError
from megacpt.yamlfile import parse_yaml, read_yaml


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(hint: Any) -> str:
    """How a type reads in an error message."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if typing.get_origin(hint) is list:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and return it in that type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except UserError as err:
                errors.append(str(err))
        if len(errors) == 1:
            raise UserError(errors[0])
        expected = " or ".join(_describe(a) for a in args if a is not type(None))
        raise UserError(f"{where}: invalid value {value!r} (expected {expected})")
    if origin is Literal:
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)  # 1e-4 is a number already (megacpt.yamlfile)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {hint!r} at {where}")
    raise UserError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")


def from_dict(cls: Any, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise UserError(f"unknown config key '{path}'{_suggest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except UserError as err:  # a section's own range check names the field, not the section
        raise UserError(f"{where}.{err}" if where else str(err)) from None


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into the key and the YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not p for p in key.split(".")):
        raise UserError(f"override '{text}' is not of the form section.key=value")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise UserError(f"override '{text}': cannot parse value: {err}") from None
    return key, value


FROM_CHECKPOINT = "from_checkpoint"


def _model_from_checkpoint(tree: dict) -> dict:
    """The ``model`` section of the checkpoint a run starts from (``model: from_checkpoint``)."""
    from megacpt.checkpoint.meta import read_meta, resolve

    source = (tree.get("checkpoint") or {}).get("pretrained")
    if not source:
        raise UserError("model: from_checkpoint needs checkpoint.pretrained (the checkpoint to take it from)")
    model = read_meta(resolve(source))["model"]
    if not isinstance(model, dict):
        raise UserError(f"{source}: its megacpt.json holds no model config")
    return dict(model)


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides.

    ``model: from_checkpoint`` takes the architecture from ``checkpoint.pretrained``'s
    ``megacpt.json``; ``model.*`` overrides then apply on top of it.
    """
    tree: dict = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise UserError(f"config file not found: {file}")
        tree = read_yaml(file) or {}
        if not isinstance(tree, dict):
            raise UserError(f"{file}: the top level must be a mapping of sections")
    parsed = [parse_override(text) for text in overrides]
    model_first = [(k, v) for k, v in parsed if k == "model"]
    for key, value in model_first + [
        (k, v) for k, v in parsed if not k.startswith("model.") and k != "model"
    ]:
        _set_dotted(tree, key, value)
    if tree.get("model") == FROM_CHECKPOINT:
        tree["model"] = _model_from_checkpoint(tree)
    for key, value in parsed:
        if key.startswith("model."):
            _set_dotted(tree, key, value)
    _complete_stage_optimizers(tree)
    return from_dict(Config, tree)


def _complete_stage_optimizers(tree: dict) -> None:
    """Each stage's ``optimizer`` section, which gives what differs, over the run's ``optimizer``."""
    schedule = tree.get("schedule")
    stages = schedule.get("stages") if isinstance(schedule, dict) else None
    run = tree.get("optimizer") or {}
    if not isinstance(stages, list) or not isinstance(run, dict):
        return  # from_dict reports the wrong type
    for stage in stages:
        if isinstance(stage, dict) and isinstance(stage.get("optimizer"), dict):
            stage["optimizer"] = {**run, **stage["optimizer"]}


def to_dict(config: Config) -> dict:
    """The resolved config as plain data (what ``config.yaml`` in a run directory holds)."""
    return dataclasses.asdict(config)


def dump_config(config: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    write_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False))
