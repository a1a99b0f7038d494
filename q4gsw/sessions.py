"""nox session names, defined once: the noxfile, CI matrix, reproduce lines and skip hints use these.

Standard library only: noxfile.py imports this module before q4gsw is installed anywhere.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_SUITE = "llama"
HEAVY_SESSION = "heavy"
EXECUTORCH_SESSION = "executorch"
HEAVY_HINT = f"heavy: run `nox -s {HEAVY_SESSION}`"


def accuracy_session(backend: str, suite: str = DEFAULT_SUITE) -> str:
    """The session that runs the required tier of `suite` on `backend`."""
    return f"accuracy-{backend}" if suite == DEFAULT_SUITE else f"accuracy-{suite}-{backend}"


def session_for(backend: str, tier: str, suite: str = DEFAULT_SUITE) -> tuple[str, list[str]]:
    """(nox session name, the arguments it needs after `--`) that runs `tier` of `suite` on `backend`."""
    if tier == "required":
        return accuracy_session(backend, suite), []
    if tier == "heavy":
        return HEAVY_SESSION, ["--backend", backend, *([] if suite == DEFAULT_SUITE else ["--suite", suite])]
    raise ValueError(f"no nox session runs tier {tier!r} of suite {suite!r}")


def matrix_suites(data: Mapping[str, Any]) -> list[str]:
    """Every suite of a parsed matrix.toml, in order of first appearance (the default suite when a config names
    none)."""
    configs = data.get("config", [])
    return list(dict.fromkeys(c.get("suite", DEFAULT_SUITE) for c in configs if isinstance(c, dict)))


def executorch_suites(data: Mapping[str, Any]) -> list[str]:
    """The suites `nox -s executorch` runs: the default suite (linear_q4gsw's Llama shapes, as ExecuTorch's seed
    suite) and every suite of the other ops that have a [kernel_set] (their Llama shapes and upstream's small cases),
    so a checkout's every op is checked; an op ExecuTorch has no kernels of (no kernel set) is not."""
    configs = [c for c in data.get("config", []) if isinstance(c, dict)]
    default_op = data.get("defaults", {}).get("op", "linear_q4gsw")
    with_sets = {s.get("op", "linear_q4gsw") for s in data.get("kernel_set", {}).values() if isinstance(s, dict)}
    others = [c.get("suite", DEFAULT_SUITE) for c in configs
              if c.get("op", default_op) != "linear_q4gsw" and c.get("op", default_op) in with_sets]
    return list(dict.fromkeys([DEFAULT_SUITE, *others]))


def has_session(tier: str, suite: str) -> bool:
    try:
        session_for("b", tier, suite)
    except ValueError:
        return False
    return True


Rerun = tuple[tuple[str, str], ...]  # (option, value) pairs a reproduce line repeats


def rerun_options(matrix: str | Path | None = None, fixtures: str | Path | None = None,
                  executorch: str | Path | None = None) -> Rerun:
    """The options a reproduce line must repeat to rerun a case on the same inputs: a matrix other than
    ./matrix.toml, the fixtures folder, the ExecuTorch checkout; absolute, so a pasted line works from anywhere."""
    pinned = []
    if matrix is not None and Path(matrix).resolve() != Path("matrix.toml").resolve():
        pinned.append(("--matrix", str(Path(matrix).resolve())))
    if fixtures is not None:
        pinned.append(("--fixtures", str(Path(fixtures).resolve())))
    if executorch is not None:
        pinned.append(("--executorch", str(Path(executorch).resolve())))
    return tuple(pinned)


def reproduce_command(config: str, backend: str, tier: str, suite: str, kernel_args: list[str] | None = None,
                      rerun: Sequence[Sequence[str]] = ()) -> str:
    """The one command that reproduces a config: the nox session, or `check`/`run` with the kernel's arguments and
    the options that pin the run's inputs (`rerun`: matrix, fixtures, checkout), which the sessions would not."""
    pinned = [a for option, value in rerun if option not in (kernel_args or ()) for a in (option, value)]
    if kernel_args or pinned:
        return shlex.join(["python", "-m", "q4gsw", *(kernel_args or ["run"]), *pinned, "--backend", backend,
                           "--config", config])
    try:
        session, extra = session_for(backend, tier, suite)
    except ValueError:
        return shlex.join(["python", "-m", "q4gsw", "run", "--backend", backend, "--config", config])
    return shlex.join(["nox", "-s", session, "--", *[a for a in extra if a not in ("--backend", backend)],
                       "--backend", backend, "--config", config]) if extra else \
        shlex.join(["nox", "-s", session, "--", "--config", config])
