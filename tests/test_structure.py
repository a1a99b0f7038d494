"""The package's shape, checked (offline): no import circle (imports inside functions and a package's __init__
count), at most 12 modules at the top level, no module over 400 lines, no function over 80, one dataclass per
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
MAX_FUNCTION_LINES = 80
MAX_TOP_LEVEL_MODULES = 12


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
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
            # `from PACKAGE import SUBMODULE` imports the submodule; `from MODULE import NAME`, the module.
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {m for m in found if m in known and m != name}


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _circles(package: Path) -> list[list[str]]:
    """Every import circle among a package's modules: an import anywhere in a module (inside a function too) is an
    edge, and a package's __init__ is a module like any other (its imports of its own submodules count)."""
    modules = _modules(package)
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
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
    return circles


def test_no_import_circle():
    assert _circles(PACKAGE) == []


def test_a_circle_through_a_package_init_or_a_function_level_import_is_found(tmp_path):
    """The checker itself: a package __init__ importing its submodule, which imports a name of the package back
    inside a function, is a circle; importing a sibling submodule through the package (`from pkg import sub`) is
    not an import of the package's __init__."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg.registry import find\n")
    (package / "registry.py").write_text("def find():\n    from pkg import helper\n    return helper\n")
    (package / "leaf.py").write_text("VALUE = 1\n")
    assert _circles(package) == [["pkg", "pkg.registry", "pkg"]]
    (package / "registry.py").write_text("def find():\n    from pkg import leaf\n    return leaf\n")
    assert _circles(package) == []


def test_at_most_12_modules_at_the_top_level():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_function_is_over_80_lines():
    """Every def, methods and nested functions included, from its `def` line to its last line."""
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert long == {}


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


def test_constants_means_the_ops_weights_only():
    """One meaning per name: `constants` is what an op's kernels bind (Problem.constants, Op.synthetic_constants);
    a kernel's WGSL `override` values, resolved from matrix.toml's `overrides`, are `overrides` in the modules that
    resolve and dispatch them, which never see an op's constants (the one 'constants' left is wgpu's API key)."""
    offenders = []
    for folder in ("matrix", "webgpu"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                name = (node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.arg | ast.keyword)
                        else node.attr if isinstance(node, ast.Attribute) else None)
                if name == "constants":
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


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
