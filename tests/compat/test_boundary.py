"""Tier 1: the boundary for foreign internals (``megacpt.compat``) holds.

Every foreign symbol it lists still exists; every foreign method it replaces wholesale still has
the source it was written against; and no module outside ``megacpt/compat`` names a private
symbol of the boundary, so an upgrade of Megatron-core, torch or transformers fails here first.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import re
from pathlib import Path

import pytest

from megacpt.compat import BOUNDARY, REPLACED

PACKAGE = Path(__file__).resolve().parents[2] / "megacpt"


def _original_source(module_name: str, path: str) -> str:
    """The source of ``module_name``'s ``Class.method`` as its file has it (a patch in this process
    does not change what is read)."""
    module = importlib.import_module(module_name)
    source = Path(inspect.getfile(module)).read_text()
    tree = ast.parse(source)
    *classes, name = path.split(".")
    nodes = tree.body
    for cls in classes:
        nodes = next(n for n in nodes if isinstance(n, ast.ClassDef) and n.name == cls).body
    node = next(n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name)
    return ast.get_source_segment(source, node) or ""


@pytest.mark.parametrize(("module", "path"), BOUNDARY, ids=lambda v: v if isinstance(v, str) else None)
def test_every_foreign_symbol_still_exists(module: str, path: str) -> None:
    target = importlib.import_module(module)
    for part in path.split("."):
        assert hasattr(target, part), f"{module}.{path} is gone: update megacpt/compat"
        target = getattr(target, part)


@pytest.mark.parametrize(
    ("key", "digest"), REPLACED.items(), ids=lambda v: ".".join(v) if isinstance(v, tuple) else None
)
def test_methods_replaced_wholesale_are_unchanged_upstream(key: tuple[str, str], digest: str) -> None:
    got = hashlib.sha256(_original_source(*key).encode()).hexdigest()
    assert got == digest, f"{'.'.join(key)} changed upstream: review its replacement in megacpt/compat"


def test_no_private_foreign_name_outside_the_boundary() -> None:
    names = {path.split(".")[-1] for _, path in BOUNDARY}
    private = {n for n in names if n.startswith("_") and not n.startswith("__")}
    private.add("_internal")  # torch.testing._internal
    pattern = re.compile(r"\b(" + "|".join(sorted(private)) + r")\b")
    offenders = [
        f"{file.relative_to(PACKAGE.parent)}: {match.group(1)}"
        for file in sorted(PACKAGE.rglob("*.py"))
        if "compat" not in file.relative_to(PACKAGE).parts
        for match in pattern.finditer(file.read_text())
    ]
    assert not offenders, offenders
