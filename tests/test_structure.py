"""The package's shape, checked (offline): no import circle, no module over 400 lines, one dataclass per
concept, and nothing outside an op's folder that names the op's specifics."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path

import q4gsw

PACKAGE = Path(q4gsw.__file__).parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The q4gsw modules `name` imports anywhere in its text (top level or inside functions)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_import_circle():
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # A package's __init__ importing its own submodules (the ops registry) is how a package exposes them; a
    # submodule importing its package back is the circle that counts, and is caught like any other.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_no_two_dataclasses_share_their_fields():
    by_fields: dict[frozenset[str], list[str]] = {}
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="q4gsw."):
        if info.name == "q4gsw.__main__":  # importing it runs the CLI
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if dataclasses.is_dataclass(value) and isinstance(value, type) and value.__module__ == info.name:
                names = frozenset(f.name for f in dataclasses.fields(value))
                by_fields.setdefault(names, []).append(f"{info.name}.{value.__qualname__}")
    twins = {tuple(v) for v in by_fields.values() if len(v) > 1}
    assert twins == set()


def test_only_the_ops_folders_know_their_ops():
    """torchao recipes and ExecuTorch's op specifics (linear_q4gsw's variants, its constants' layout) live in
    q4gsw/ops/<op>/ (an op sharing linear_q4gsw's int4 packing imports its layout); the rest of the package
    reaches them through the Op interface."""
    specific = re.compile(r"torchao\.|IntxWeightOnlyConfig|q4gsw_linear|coop4|gemm_steel|PackedLinear|weight_packed|"
                          r"padded_N|linear_q4gsw\.(layout|recipe|golden|mutants)")
    own = PACKAGE / "ops"
    offenders = [f"{path.relative_to(PACKAGE)}:{i}" for path in PACKAGE.rglob("*.py") if own not in path.parents
                 for i, line in enumerate(path.read_text().splitlines(), 1) if specific.search(line)]
    assert offenders == []
