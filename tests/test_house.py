"""The shape of the package: no import circles and no lower layer importing a higher one, counting
imports inside functions too (``bench/house.py``)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

HOUSE = Path(__file__).resolve().parents[1] / "bench" / "house.py"
# The run and its recipes sit on top: nothing below them may import them, at any depth.
TOP = ("megacpt.training", "megacpt.train", "megacpt.recipes", "megacpt.cli", "megacpt.__main__")


def _house():
    spec = importlib.util.spec_from_file_location("house", HOUSE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _on_top(module: str) -> bool:
    return any(module == top or module.startswith(f"{top}.") for top in TOP)


def test_no_import_circle_and_no_lower_layer_imports_the_run() -> None:
    house = _house()
    graph = house.import_graph(deep=True)
    assert house.circles(graph) == []
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() if not _on_top(m) for d in deps if _on_top(d))
    assert upward == []


def test_the_checks_see_an_import_inside_a_function() -> None:
    house = _house()
    tree = ast.parse("def f():\n    from megacpt.training.trainer import Trainer\n")
    modules = {"megacpt.training.trainer"}
    assert house.imports(tree, modules) == set()
    assert house.imports(tree, modules, deep=True) == {"megacpt.training.trainer"}
    assert house.circles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
