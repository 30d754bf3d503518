"""Every YAML megacpt reads refuses a key written twice, naming both lines (PyYAML lets the last win)."""

from __future__ import annotations

from pathlib import Path

import pytest

from megacpt.config.loader import load_config
from megacpt.data.mixture.spec import DataMixture
from megacpt.errors import UserError
from megacpt.yamlfile import parse_yaml


def test_a_second_section_is_refused_not_merged(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  train_steps: 5\nmodel:\n  num_layers: 2\ntraining:\n  lr: 1.0e-3\n")
    with pytest.raises(UserError, match=r"run.yaml: duplicate key 'training' at line 5 \(first at line 1\)$"):
        load_config(path)


def test_a_key_repeated_inside_a_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  train_steps: 5\n  train_steps: 6\n")
    with pytest.raises(UserError, match=r"duplicate key 'train_steps' at line 3 \(first at line 2\)$"):
        load_config(path)


def test_an_override_value_with_a_repeated_key_is_refused() -> None:
    with pytest.raises(UserError, match="cannot parse value: duplicate key 'lr'"):
        load_config(None, ["training={lr: 1, lr: 2}"])


def test_a_mixture_file_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("datasets:\n  - {prefix: a, weight: 1, weight: 2}\n")
    with pytest.raises(UserError, match=r"mix.yaml: duplicate key 'weight' at line 2 \(first at line 2\)$"):
        DataMixture.from_yaml(path)


def test_merge_keys_still_override_as_yaml_intends() -> None:
    text = "base: &b {lr: 1, steps: 2}\nrun:\n  <<: *b\n  lr: 3\n"
    assert parse_yaml(text)["run"] == {"lr": 3, "steps": 2}
