"""The shape of the code under ``megacpt/``: module sizes, longest functions, import circles, private touches.

Prints the module count, the median and largest module (lines), the three longest functions,
every import circle among megacpt's modules (module-level imports, which run at import time, and
then counting function-level imports too) and every private name of a foreign package used outside ``megacpt/compat`` (``from x._y
import``, ``import x._y``, ``from x import _y``, and ``obj._attr`` on anything but ``self``/``cls``).

    python bench/house.py
"""

from __future__ import annotations

import ast
import statistics
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "megacpt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.Module, modules: set[str], deep: bool = False) -> set[str]:
    """The megacpt modules a module imports at import time, or anywhere in it (``deep``: function-level
    imports too, which run later but still tie the two modules together)."""
    found: set[str] = set()
    for node in ast.walk(tree) if deep else tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("megacpt"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("megacpt")}
    return found & modules


def import_graph(deep: bool) -> dict[str, set[str]]:
    """Each megacpt module and the megacpt modules it imports (``deep``: anywhere in it)."""
    names = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    trees = {name: ast.parse(path.read_text()) for name, path in names.items()}
    return {name: imports(tree, set(names), deep) - {name} for name, tree in trees.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                found.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


DOCUMENTED = {"_exit"}  # os._exit: public, documented, underscore by convention


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in DOCUMENTED


def private_touches(path: Path, tree: ast.Module) -> list[str]:
    where = path.relative_to(PACKAGE.parent)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("megacpt"):
            names = [*node.module.split("."), *(a.name for a in node.names)]
            if any(private(n) for n in names):
                out.append(f"{where}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.Import):
            out += [  # megacpt's own private modules (the compiled builder) are not foreign
                f"{where}:{node.lineno} import {a.name}"
                for a in node.names
                if not a.name.startswith("megacpt") and any(map(private, a.name.split(".")))
            ]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                out.append(f"{where}:{node.lineno} .{node.attr}")
    return out


def main() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    trees = {path: ast.parse(path.read_text()) for path in files}
    lines = {path: len(path.read_text().splitlines()) for path in files}
    largest = max(lines, key=lines.__getitem__)
    print(
        f"modules {len(files)}, median {statistics.median(lines.values()):.0f} lines, largest {lines[largest]} ({largest.relative_to(PACKAGE.parent)})"
    )
    functions = sorted(
        (
            (node.end_lineno - node.lineno + 1, f"{path.relative_to(PACKAGE.parent)}:{node.name}")
            for path, tree in trees.items()
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
        ),
        reverse=True,
    )
    print("longest functions: " + ", ".join(f"{name} {size}" for size, name in functions[:3]))
    for deep, what in ((False, "at import time"), (True, "counting function-level imports")):
        found = circles(import_graph(deep))
        print(f"import circles {what}: {len(found)}" + "".join(f"\n  {' -> '.join(c)}" for c in found))
    touches = [
        t for path, tree in trees.items() if "compat" not in path.parts for t in private_touches(path, tree)
    ]
    print(
        f"private foreign names outside megacpt/compat: {len(touches)}" + "".join(f"\n  {t}" for t in touches)
    )


if __name__ == "__main__":
    main()
