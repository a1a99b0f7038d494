"""nox sessions, expanded from matrix.toml. Sessions stay thin: each calls `python -m q4gsw ...`.

Arguments after `--` reach the CLI, e.g. `nox -s accuracy-swiftshader -- --config q_proj`.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")
sys.path.insert(0, str(ROOT))
from q4gsw.sessions import (  # noqa: E402 (standard library only)
    DEFAULT_SUITE,
    EXECUTORCH_SESSION,
    HEAVY_SESSION,
    accuracy_session,
    executorch_suites,
    matrix_suites,
)

# uv builds a session's virtualenv in seconds where it is installed (`pip install nox[uv]`); virtualenv otherwise.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]


def _matrix_data() -> dict:
    # Only names are read here; the package validates the whole file and reports errors.
    try:
        return tomllib.loads((ROOT / "matrix.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _matrix_backends() -> list[str]:
    return sorted(_matrix_data().get("backend", {})) or ["swiftshader"]


def _install(session: nox.Session, extras: str) -> None:
    env: dict[str, str] = {}
    reinstall: list[str] = []
    if session.venv_backend == "uv":
        # uv would otherwise keep a stale editable install of q4gsw in a reused venv (nox #914).
        reinstall = ["--reinstall-package", "q4gsw"]
        # uv does not read pip's configuration: a machine that offers wheels to pip (PIP_FIND_LINKS, e.g. a
        # CPU build of torch) offers them to uv too, instead of uv fetching PyPI's CUDA build.
        if os.environ.get("PIP_FIND_LINKS") and not os.environ.get("UV_FIND_LINKS"):
            env["UV_FIND_LINKS"] = os.environ["PIP_FIND_LINKS"]
    session.install("-c", CONSTRAINTS, *reinstall, "-e", f".[{extras}]", env=env)


def _fixtures_folder(posargs: list[str]) -> Path | None:
    """The folder of `--fixtures DIR` or `--fixtures=DIR` among the session's arguments."""
    for i, arg in enumerate(posargs):
        if arg.startswith("--fixtures="):
            return Path(arg.split("=", 1)[1])
        if arg == "--fixtures" and i + 1 < len(posargs):
            return Path(posargs[i + 1])
    return None


def run_extras(posargs: list[str]) -> str:
    """The extras a run needs. With q4gsw's exported fixtures (`-- --fixtures DIR`, as CI passes) no torch or
    executorch; an ExecuTorch export folder (DIR/q4gsw_<config>.pte) is read with executorch, so it needs it."""
    folder = _fixtures_folder(posargs)
    if folder is None:
        return "export,report"
    executorch_layout = folder.is_dir() and any(p.suffix == ".pte" and p.is_file() for p in folder.iterdir())
    return "export,report" if executorch_layout else "report"


def _run_extras(session: nox.Session) -> str:
    return run_extras(list(session.posargs))


def _default_backend(posargs: list[str]) -> list[str]:
    """SwiftShader unless the user's arguments name a backend (`--backend B` or `--backend=B`)."""
    named = any(a == "--backend" or a.startswith("--backend=") for a in posargs)
    return list(posargs) if named else ["--backend", "swiftshader", *posargs]


def _accuracy(backend: str) -> Callable[[nox.Session], None]:
    def session_body(session: nox.Session) -> None:
        _install(session, _run_extras(session))
        session.run("python", "-m", "q4gsw", "run", "--backend", backend, "--tier", "required",
                    "--results", f"results/accuracy-{backend}", *session.posargs)

    session_body.__doc__ = f"Required tier on {backend}."
    return session_body


for _backend in _matrix_backends():
    nox.session(name=accuracy_session(_backend), tags=["accuracy", _backend], default=False)(_accuracy(_backend))


@nox.session(name=HEAVY_SESSION, default=False, tags=["heavy"])
def heavy(session: nox.Session) -> None:
    """Heavy tier (lm_head, 8k prefill); SwiftShader unless `-- --backend NAME`."""
    _install(session, _run_extras(session))
    session.run("python", "-m", "q4gsw", "run", "--tier", "heavy", "--results", "results/heavy",
                *_default_backend(session.posargs))


@nox.session(name="ci-matrix", default=False)
def ci_matrix(session: nox.Session) -> None:
    """GitHub Actions matrix (JSON) from matrix.toml; `-- --tier heavy --shards 2 --github-output FILE`."""
    session.install("-c", CONSTRAINTS, "-e", ".")
    session.run("python", "-m", "q4gsw", "ci-matrix", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Kernel benchmark table (time, GFLOP/s, GB/s, numpy ratio); `-- --backend NAME`."""
    _install(session, "report")
    session.run("python", "-m", "q4gsw", "bench", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit + end-to-end tests (pytest)."""
    _install(session, "export,report,test")
    session.run("ruff", "check", "q4gsw", "tests", "noxfile.py")
    # pyproject.toml's addopts run the tests on every core (pytest-xdist); `-- -n 0` runs them serially.
    session.run("python", "-m", "pytest", "-q", "-rs", *session.posargs)


@nox.session(default=False, tags=["edges"])
def edges(session: nox.Session) -> None:
    """Suite "edges" (upstream tile-edge shapes, group sizes 8/64/128, int4 edge weights); SwiftShader unless
    `-- --backend NAME`."""
    _install(session, _run_extras(session))
    session.run("python", "-m", "q4gsw", "run", "--suite", "edges", "--tier", "required", "--results",
                "results/edges", *_default_backend(session.posargs))


@nox.session(default=False)
def mutants(session: nox.Session) -> None:
    """Mutation self-test of every op (each op's mutants killed, no false alarm); `-- --backend NAME`, `-- --op OP`."""
    _install(session, "export,report")
    ops = [] if any(a == "--op" or a.startswith("--op=") for a in session.posargs) else ["--op", "all"]
    session.run("python", "-m", "q4gsw", "mutants", "--results", "results/mutants", *ops, *session.posargs)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing of the harness's own core with mutmut ([tool.mutmut] in pyproject.toml, docs/mutation.md);
    `-- results`, `-- show NAME` or `-- run 'q4gsw.compare*'` pass through to mutmut (default: run, then results)."""
    _install(session, "report,test")
    session.install("-c", CONSTRAINTS, "mutmut")
    if session.posargs:
        session.run("mutmut", *session.posargs)
    else:
        session.run("mutmut", "run")
        session.run("mutmut", "results")


@nox.session(default=False)
def audit(session: nox.Session) -> None:
    """Tolerance audit against the fp32 error model, with the measured errors found under results/."""
    _install(session, "export,report")
    session.run("python", "-m", "q4gsw", "audit", "--results", "results", "--json", "results/audit.json",
                *session.posargs)


def _suite(suite: str, backend: str) -> Callable[[nox.Session], None]:
    def session_body(session: nox.Session) -> None:
        _install(session, _run_extras(session))
        session.run("python", "-m", "q4gsw", "run", "--suite", suite, "--backend", backend, "--tier", "required",
                    "--results", f"results/{accuracy_session(backend, suite)}", *session.posargs)

    session_body.__doc__ = f"Suite '{suite}', required tier, on {backend} (the name the runner's reproduce lines use)."
    return session_body


for _suite_name in matrix_suites(_matrix_data()):
    if _suite_name == DEFAULT_SUITE:
        continue
    for _backend in _matrix_backends():
        nox.session(name=accuracy_session(_backend, _suite_name), tags=[_suite_name, _backend],
                    default=False)(_suite(_suite_name, _backend))


@nox.session(name=EXECUTORCH_SESSION, default=False, tags=["executorch"])
def executorch(session: nox.Session) -> None:
    """ExecuTorch's own kernels of every op, routed as its runtime routes them: `-- --executorch PATH [--backend B]`
    (default backend: SwiftShader through Dawn; `--all-variants` checks every variant whose preconditions hold).
    Runs the Llama suite of linear_q4gsw and every suite of the other ops, unless --suite, --config or --op."""
    _install(session, _run_extras(session))
    posargs = list(session.posargs)
    if not any(a == "--backend" or a.startswith("--backend=") for a in posargs):
        posargs = ["--backend", "swiftshader-dawn", *posargs]
    suites = [a for suite in executorch_suites(_matrix_data()) for a in ("--suite", suite)]
    if any(a in ("--suite", "--config", "--op") or a.startswith(("--suite=", "--config=", "--op=")) for a in posargs):
        suites = []  # the user chose what to run
    session.run("python", "-m", "q4gsw", "run", "--tier", "required", "--results", "results/executorch", *suites,
                *posargs)
