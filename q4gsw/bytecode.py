"""Compile the first export's imports ahead of it, on the core that would otherwise idle.

A virtualenv built by uv holds no bytecode, and where PYTHONDONTWRITEBYTECODE is set (as on this project's
CI machines) none is ever written: the export process then compiles ~50 MB of torch, torchao, executorch,
sympy and networkx source on one core before its first fixture (about 14 of its ~24 s of imports), while
the run's other core has nothing to do. So the export process starts one helper, `python -m q4gsw _warm`,
that compiles (standard `compileall`) the packages it will import last, in roughly the reverse of the order
it imports them: the two meet in the middle. Once the first export has its imports, the helper goes on at
the lowest priority (for the next run's exports) until the export process ends.

Where the environment forbids writing bytecode, the helper writes it only under the q4gsw cache
(`<cache>/bytecode`, read through `sys.pycache_prefix`), never beside the sources. Where bytecode already
exists (pip compiles at install), nothing is started. A stale or missing directory below only costs speed:
Python checks every .pyc against its source.
"""

from __future__ import annotations

import compileall
import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# Package folders the export imports from, the last-imported first (the order of first import, measured on
# torch 2.13 / torchao 0.18 / executorch 1.5 with a sys.meta_path recorder, reversed); "/*" means the
# folder's own files only. Folders it barely touches (torch/_inductor is an exception: most of it is imported)
# are left out: compiling them would cost more than it saves.
IMPORTED_LAST_FIRST = (
    "executorch/backends/vulkan", "executorch/backends/xnnpack", "executorch/backends/transforms", "jinja2",
    "networkx/algorithms", "networkx/readwrite", "networkx/generators", "networkx/classes", "ruamel",
    "executorch/exir", "torch/onnx", "torch/_inductor", "torch/_numpy", "sympy/solvers", "sympy/matrices",
    "sympy/functions", "sympy/printing", "sympy/polys", "sympy/core", "mpmath", "torch/_dynamo",
    "torchao/quantization", "torch/_higher_order_ops", "torch/_export", "torch/export", "torch/ao", "torch/fx",
    "torch/_functorch", "torch/distributed", "torch/utils", "torch/nn", "torch/*",
)


def _site_packages() -> Path | None:
    spec = importlib.util.find_spec("torch")  # finds, does not import
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.parent


def _has_bytecode(source: Path) -> bool:
    try:
        return Path(importlib.util.cache_from_source(str(source))).is_file()
    except (NotImplementedError, ValueError):
        return True  # no bytecode caching in this interpreter: nothing to warm


def start_warming(cache_root: Path, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """Start the helper unless torch is imported already or its bytecode exists; sets this process's
    sys.pycache_prefix when bytecode must not be written beside the sources. None when nothing was started."""
    site = _site_packages()
    if "torch" in sys.modules or site is None or _has_bytecode(site / "torch" / "__init__.py"):
        return None
    prefix = ""
    if sys.dont_write_bytecode:
        try:
            (cache_root / "bytecode").mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # an unusable cache: the export compiles its imports itself, as before
        prefix = str(cache_root / "bytecode")
        sys.pycache_prefix = prefix
    folders = [str(site / f) for f in IMPORTED_LAST_FIRST if (site / f.removesuffix("/*")).is_dir()]
    helper = subprocess.Popen([sys.executable, "-m", "q4gsw", "_warm", "--prefix", prefix, *folders], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Below the export itself (and the run's provisioning and probing): it may only use CPU that would idle.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, helper.pid, 10)
    return helper


def yield_warming(helper: subprocess.Popen[bytes] | None) -> None:
    """The export has its imports: the helper keeps going only where the CPU is otherwise idle."""
    if helper is not None and helper.poll() is None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, helper.pid, 19)


def stop_warming(helper: subprocess.Popen[bytes] | None) -> None:
    if helper is not None and helper.poll() is None:
        helper.kill()
        helper.wait()


def warm_main(prefix: str, folders: list[str]) -> int:
    """`python -m q4gsw _warm --prefix P FOLDER...`: compile the folders in order (into P when given)."""
    if prefix:
        sys.pycache_prefix = prefix
    for folder in folders:
        own_files_only = folder.endswith("/*")
        compileall.compile_dir(folder.removesuffix("/*"), maxlevels=0 if own_files_only else None, quiet=2)
    return 0
