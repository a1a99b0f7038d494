"""The ops q4gsw checks, by name: `op_for(config)` is how every stage reaches what is specific to an op.

The interface is q4gsw.ops.base.Op. An op is its folder: each folder q4gsw/ops/<name>/ (and each folder inside
a folder of $Q4GSW_OPS_PATH, for ops kept outside the package) whose __init__.py defines one Op subclass with
`name = "<name>"`. Nothing else registers it (docs/ops.md).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import keyword
import os
from collections.abc import Mapping
from pathlib import Path

from q4gsw.matrix.values import Config, Dim
from q4gsw.ops.base import Op

OPS_PATH = "Q4GSW_OPS_PATH"  # folders of extra op folders, os.pathsep-separated (child processes inherit it)
_HERE = Path(__file__).parent


class OpFolderError(Exception):
    """An op folder q4gsw cannot use: one line naming the folder, the problem and the fix."""

    def __init__(self, folder: Path, problem: str, fix: str) -> None:
        super().__init__(f"{folder}: op folder '{folder.name}': {problem} — {fix}")


def op_roots() -> tuple[Path, ...]:
    """Where op folders are looked for: the package's own, then each folder named by $Q4GSW_OPS_PATH."""
    extra = [Path(p).expanduser().resolve() for p in os.environ.get(OPS_PATH, "").split(os.pathsep) if p]
    for root in extra:
        if not root.is_dir():
            raise OpFolderError(root, f"${OPS_PATH} names it but it is not a folder",
                                f"create it or take it out of ${OPS_PATH}")
    return (_HERE, *extra)


def _op_folders() -> dict[str, Path]:
    """name -> folder. A folder holding only __pycache__ (an op deleted by a branch switch) is no op."""
    found: dict[str, Path] = {}
    for root in op_roots():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            if not any(p.name != "__pycache__" for p in folder.iterdir()):
                continue
            if not (folder / "__init__.py").is_file():
                raise OpFolderError(folder, "no __init__.py", "add __init__.py defining the op's Op subclass "
                                    "(docs/ops.md), or move the folder out of " + str(root))
            if folder.name in found:
                raise OpFolderError(folder, f"an op of this name is also in {found[folder.name]}",
                                    "rename one of the two folders (and its Op's name)")
            found[folder.name] = folder
    return found


def _load(name: str, folder: Path) -> Op:
    """The one Op subclass the folder's __init__.py defines (or imports from its own modules), instantiated."""
    module_name = f"{__name__}.{name}"
    if str(folder.parent) not in __path__:  # an extra root: q4gsw.ops.<name> imports from it, relative imports work
        __path__.append(str(folder.parent))
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the op author's code (a sys.exit too): one line, the folder named
        raise _failed(folder, "importing it", exc) from exc
    defined = [cls for cls in vars(module).values() if inspect.isclass(cls) and issubclass(cls, Op)
               and (cls.__module__ == module_name or cls.__module__.startswith(module_name + "."))]
    own = sorted({cls for cls in defined if not inspect.isabstract(cls)}, key=lambda cls: cls.__qualname__)
    abstract = [cls.__qualname__ for cls in defined if inspect.isabstract(cls)]
    if not own:
        unfinished = (f" ({', '.join(abstract)} leaves abstract methods unwritten: see q4gsw/ops/base.py)"
                      if abstract else "")
        raise OpFolderError(folder, f"__init__.py defines no Op subclass{unfinished}",
                            "define `class ...(Op)` with every abstract method, as docs/ops.md walks through")
    if len(own) > 1:
        raise OpFolderError(folder, f"__init__.py defines {len(own)} Op subclasses "
                            f"({', '.join(c.__qualname__ for c in own)})", "keep one op per folder")
    try:
        op = own[0]()
    except (Exception, SystemExit) as exc:
        raise _failed(folder, f"creating its Op {own[0].__qualname__}()", exc) from exc
    if getattr(op, "name", None) != name:
        raise OpFolderError(folder, f"its Op {own[0].__qualname__} has name = {getattr(op, 'name', None)!r}",
                            f"set name = {name!r} (an op's name is its folder's)")
    dims = getattr(op, "dims", None)
    names = [d.name for d in dims if _usable(d)] if isinstance(dims, tuple) else []
    if not isinstance(dims, tuple) or len(names) != len(dims) or len(set(names)) != len(names):
        raise OpFolderError(folder, f"its Op {own[0].__qualname__} declares dims = {dims!r}",
                            "declare its dimensions as dims = (Dim(name, meaning), ...), each name once "
                            "(q4gsw.matrix.values.Dim; an op without any: dims = ()): a name is a Python identifier "
                            "(matrix.toml key and expression name) and not f16_accumulate_gemm, a minimum an integer")
    return op


def _failed(folder: Path, doing: str, exc: BaseException) -> OpFolderError:
    return OpFolderError(folder, f"{doing} failed: {type(exc).__name__}: {exc}", "fix the op's code "
                         "(python -c 'import q4gsw.ops as o; o.registry()' shows the traceback)")


def _usable(dim: object) -> bool:
    """A Dim a config can give and an expression can read: an identifier name (no keyword, not the runtime option
    every expression sees) and an integer minimum."""
    return (isinstance(dim, Dim) and isinstance(dim.name, str) and dim.name.isidentifier()
            and not keyword.iskeyword(dim.name) and dim.name != "f16_accumulate_gemm"
            and isinstance(dim.minimum, int) and not isinstance(dim.minimum, bool))


@functools.cache
def registry() -> Mapping[str, Op]:
    """name -> Op, every op folder found. Imported on first use, so `import q4gsw.ops` stays light."""
    return {name: _load(name, folder) for name, folder in _op_folders().items()}


def op_names() -> tuple[str, ...]:
    return tuple(registry())


def expression_names(config: Config) -> dict[str, int]:
    """The names a kernel's `when`, `dispatch` and `overrides` expressions see for a config: the op's dims, the
    names it derives from them, and the config's runtime option f16_accumulate_gemm (0 or 1)."""
    op = op_for(config)
    return {**config.dims, **op.derived_names(config.dims), "f16_accumulate_gemm": int(config.f16_accumulate_gemm)}


PLACEHOLDER_DIM = 64  # every dim's value when an expression is checked before any config is paired with it


def placeholder_names(op_name: str) -> dict[str, int]:
    """expression_names for a made-up config of the op (every dim 64): does an expression evaluate at all?"""
    op = op_for(op_name)
    dims = {d.name: max(PLACEHOLDER_DIM, d.minimum) for d in op.dims}
    return {**dims, **op.derived_names(dims), "f16_accumulate_gemm": 0}


def op_for(config_or_name: Config | str) -> Op:
    """The Op of a config (or by name); KeyError names the known ops."""
    name = config_or_name if isinstance(config_or_name, str) else config_or_name.op
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(f"unknown op '{name}': known ops are {', '.join(sorted(registry()))}") from None
