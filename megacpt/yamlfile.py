"""Reading YAML strictly: a key given twice in one mapping is an error naming both lines, and
``1e-3`` is a number.

PyYAML's ``safe_load`` lets the last duplicate win, so a config with two ``training:`` sections
silently loses the first. The loader here is PyYAML's ``SafeLoader`` with one check added to its
mapping constructor (PyYAML is already the project's YAML library; ``ruamel.yaml`` also refuses
duplicates but would be a second YAML stack for this one check). Merge keys (``<<``) still
override as YAML intends; only keys written twice are refused. PyYAML follows YAML 1.1, where a
float needs a dot (``1e-3`` is text); the loader adds YAML 1.2's exponent form, so that every file
and override megacpt reads (run configs, mixture files) reads ``1e-3`` as the number it means, in
this one place.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from megacpt.errors import UserError


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(f"duplicate key {key!r} at line {second.line + 1} (first at line {first.line + 1})")


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                continue
            if first is not key_node.start_mark:
                raise _DuplicateKey(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats PyYAML's 1.1 resolver reads as text: an exponent without a dot (1e-3, 2E+5).
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+|[0-9]*\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def parse_yaml(text: str) -> Any:
    """``text`` as YAML (``yaml.YAMLError`` on bad YAML or a duplicate key)."""
    return yaml.load(text, Loader=_StrictLoader)


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML file at ``path``; a missing file, bad YAML or a duplicate key is a ``UserError``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_yaml(handle.read())
    except OSError as err:
        raise UserError(f"cannot read {os.fspath(path)}: {err.strerror}") from None
    except _DuplicateKey as err:
        raise UserError(f"{os.fspath(path)}: {err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{os.fspath(path)}: not valid YAML: {err}") from None
