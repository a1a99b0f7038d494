"""All of a run's cold-start machinery, in one module imported only when some of it is on.

Three mechanisms make a cold run (fresh virtualenv, empty cache, 2 cores) reach its verdict sooner:

- **spares**: a config's GPU child starts *warm*, before its fixture is in (it imports wgpu, opens its device,
  builds its first pipeline), and once a config's fixture is in, the children of the next SPARES_AHEAD configs
  start (BENCH_SPARES_AHEAD in bench mode, which times kernels: as little beside them as possible).
- **nice**: in a run that exports, the GPU children run at CHILD_NICE_WHILE_EXPORTING, so the export process,
  whose fixtures every later config waits for, keeps its core.
- **bytecode**: where the virtualenv holds no bytecode, a niced helper compiles the children's imports ahead.

`Q4GSW_PREWARM` switches them (for measuring each, see scripts/bench-cold-start.sh): unset or `1` all on; `0`
or empty all off (then one child per config, started only when its fixture is in, at normal priority, and no
helper; this module is then not even imported); or a comma list of the mechanisms to keep on, e.g.
`spares,nice`. An unknown name is a usage error (exit 2) naming the variable.

Bytecode. A virtualenv built by uv holds no bytecode, and where PYTHONDONTWRITEBYTECODE is set (as on this
project's CI machines) none is ever written: every child then compiles its imports from source. The export
process alone compiles ~50 MB of torch, torchao, executorch, sympy and networkx source on one core before its
first fixture (about 14 of its ~24 s of imports) while the run's other core has little to do, and each GPU child
compiles numpy and wgpu again. So a run starts one helper, `python -m q4gsw _warm`, that compiles (standard
`compileall`) the folders of the modules the export imports, in the reverse of the order it imports them (helper
and exporter meet in the middle), then what the GPU children import. The helper runs niced (it may only use CPU
the run leaves idle) and ends with the run. Where the environment forbids writing bytecode, the helper writes it
only under the q4gsw cache (`<cache>/bytecode`) and the children read it from there (PYTHONPYCACHEPREFIX);
nothing is written beside the sources. Where bytecode already exists (pip compiles at install), nothing is
started and nothing changes. A stale or missing folder below only costs speed: Python checks every .pyc
against its source.
"""

from __future__ import annotations

import compileall
import contextlib
import importlib.util
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from q4gsw.run.procs import PREWARM_ENV, ChildPolicy, child_env

MECHANISMS = ("spares", "nice", "bytecode")
SPARES_AHEAD = 4  # configs whose children start while one runs (each ~150 MB until its fixture)
BENCH_SPARES_AHEAD = 1  # bench times kernels: one spare at a time, as little beside the timed work as possible
CHILD_NICE_WHILE_EXPORTING = 5  # GPU children of a run that exports: the export process comes first


class PrewarmSwitchError(ValueError):
    """Q4GSW_PREWARM names something that is not a mechanism; the message says what it accepts."""


@dataclass(frozen=True)
class Prewarm:
    """Which cold-start mechanisms are on."""

    spares: bool = True
    nice: bool = True
    bytecode: bool = True

    def policy(self, mode: Literal["check", "bench"], exporting: bool) -> ChildPolicy:
        spares = (BENCH_SPARES_AHEAD if mode == "bench" else SPARES_AHEAD) if self.spares else 0
        return ChildPolicy(spares_ahead=spares, nice=CHILD_NICE_WHILE_EXPORTING if self.nice and exporting else 0)


def parse_switch(text: str | None) -> Prewarm:
    """Q4GSW_PREWARM's value: None or "1" all on, "0" or "" (or only commas) all off, else the mechanisms named."""
    if text is None or text.strip() == "1":
        return Prewarm()
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["0"]:
        names = []
    unknown = [name for name in names if name not in MECHANISMS]
    if unknown:
        raise PrewarmSwitchError(f"{PREWARM_ENV}={text!r}: unknown mechanism {', '.join(map(repr, unknown))}; "
                                 f"use 1 (all on), 0 (all off) or a comma list of {', '.join(MECHANISMS)}")
    return Prewarm(**{name: name in names for name in MECHANISMS})


@contextlib.contextmanager
def bytecode_ahead(exporting: bool, anything_to_run: bool) -> Iterator[tuple[Callable[[], None], dict[str, str]]]:
    """Children read bytecode a niced helper compiles ahead. Yields what to call once the first fixture is in (the
    helper then only uses CPU nothing else wants) and what to add to every child's environment; this process's
    own environment is left alone (runs may share it, e.g. in tests' threads)."""
    from q4gsw.paths import cache_root

    ahead = plan(cache_root(), exporting) if anything_to_run else None
    if ahead is None:
        yield (lambda: None), {}
        return
    helper = start_warming(ahead, child_env({}))
    try:
        yield (lambda: renice(helper, IDLE_NICE)), ahead.child_env()
    finally:
        stop_warming(helper)


PREFIX_ENV = "PYTHONPYCACHEPREFIX"
WARM_NICE = 10  # below the run's own processes
IDLE_NICE = 19  # once the first fixture is in: the helper only works for later runs

# What every GPU child (and the probe) imports; small, so first.
CHILD_FOLDERS = ("numpy/_core", "numpy/lib", "numpy/linalg", "numpy/*", "wgpu", "cffi", "pycparser")

# Folders whose own modules the export imports (relative to site-packages), the last-imported first: measured on
# the pinned torch 2.13 / torchao 0.18 / executorch 1.5 by scripts/record-export-imports.py. Only the modules'
# own folders, not whole packages: compiling all of torch/_inductor or executorch/exir would cost more than the
# export saves. A stale list only costs speed.
EXPORT_IMPORTS = Path(__file__).parent.parent / "export_imports.txt"


def export_folders() -> tuple[str, ...]:
    try:
        lines = EXPORT_IMPORTS.read_text().splitlines()
    except OSError:
        return ()
    return tuple(f"{line}/*" for line in lines if line and not line.startswith("#"))


@dataclass(frozen=True)
class BytecodePlan:
    prefix: str  # where bytecode is written and read ("" = beside the sources, Python's default)
    folders: tuple[str, ...]  # to compile ahead, in this order

    def child_env(self) -> dict[str, str]:
        return {PREFIX_ENV: self.prefix} if self.prefix else {}


def _package_folder(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds, does not import
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _has_bytecode(source: Path) -> bool:
    try:
        return Path(importlib.util.cache_from_source(str(source))).is_file()
    except (NotImplementedError, ValueError):
        return True  # this interpreter caches no bytecode: nothing to compile ahead


def plan(cache_root: Path, exporting: bool) -> BytecodePlan | None:
    """None where the installed packages already have bytecode beside their sources (or there is nowhere to
    put it); else where to write it and what to compile, the export's folders only when a fixture is missing."""
    numpy = _package_folder("numpy")
    if numpy is None or sys.pycache_prefix or _has_bytecode(numpy / "__init__.py"):
        return None
    prefix = ""
    if sys.dont_write_bytecode:
        try:
            (cache_root / "bytecode").mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # an unusable cache: children compile their imports themselves, as before
        prefix = str(cache_root / "bytecode")
    site = numpy.parent
    # The export's folders first: its first fixture is what the GPU work waits for.
    wanted = (export_folders() if exporting and _package_folder("torch") is not None else ()) + CHILD_FOLDERS
    here = str(Path(__file__).parent.parent)  # q4gsw itself, which every child imports
    return BytecodePlan(prefix=prefix, folders=(*(str(site / f) for f in wanted
                                                  if (site / f.removesuffix("/*")).is_dir()), here))


def link_standard_library(prefix: str) -> int:
    """Link the standard library's own bytecode (compiled when Python was installed) into the prefix; returns how
    many files. Once a prefix is set Python reads bytecode only from there, so without this every child would
    compile enum, re, typing, inspect ... from source again (~1.3 s of CPU for a common set)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    suffix = f".{sys.implementation.cache_tag}.pyc"  # optimization level 0 only, as the children run
    linked = 0
    for folder, subfolders, files in os.walk(stdlib):
        subfolders[:] = [d for d in subfolders if d not in ("site-packages", "dist-packages", "test")]
        if Path(folder).name != "__pycache__":
            continue
        mirror = Path(prefix, *Path(folder).parent.parts[1:])  # where Python looks with the prefix set
        for name in files:
            if name.endswith(suffix) and name.count(".") == 2:
                target = mirror / name
                if not target.exists():
                    with contextlib.suppress(OSError):
                        mirror.mkdir(parents=True, exist_ok=True)
                        target.symlink_to(Path(folder, name))
                        linked += 1
    return linked


def start_warming(ahead: BytecodePlan, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if ahead.prefix:
        link_standard_library(ahead.prefix)
    helper = subprocess.Popen([sys.executable, "-m", "q4gsw", "_warm", "--prefix", ahead.prefix,
                               *ahead.folders], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    renice(helper, WARM_NICE)
    return helper


def renice(process: subprocess.Popen[bytes] | None, nice: int) -> None:
    if process is not None and process.poll() is None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, process.pid, nice)


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
