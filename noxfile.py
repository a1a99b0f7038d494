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


def _install(session: nox.Session, extras: str, constraints: str = CONSTRAINTS) -> None:
    env: dict[str, str] = {}
    reinstall: list[str] = []
    if session.venv_backend == "uv":
        # uv would otherwise keep a stale editable install of q4gsw in a reused venv (nox #914).
        reinstall = ["--reinstall-package", "q4gsw"]
        # uv does not read pip's configuration: a machine that offers wheels to pip (PIP_FIND_LINKS, e.g. a
        # CPU build of torch) offers them to uv too, instead of uv fetching PyPI's CUDA build.
        if os.environ.get("PIP_FIND_LINKS") and not os.environ.get("UV_FIND_LINKS"):
            env["UV_FIND_LINKS"] = os.environ["PIP_FIND_LINKS"]
    session.install("-c", constraints, *reinstall, "-e", f".[{extras}]", env=env)


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


# ------------------------------------------------------------------------------------------------------------------
# The WebGPU implementation versions axis (docs/versions.md): one session per release, each in its own virtualenv
# holding exactly that package (constraints.txt's pin of it replaced), all running the same selection from one
# export. The default sessions keep constraints.txt's pins. Left out, and why:
#   wgpudawn 0.32.0.0  its Dawn extras have no set_instance_extras: q4gsw can neither pick Dawn's backend nor turn off
#                      its timestamp quantization, so every case fails at the adapter probe (AttributeError).
#   wgpu < 0.30        not asked for; pyproject.toml's range (wgpu>=0.30) keeps them out.
# ------------------------------------------------------------------------------------------------------------------
WEBGPU_VERSIONS = {
    "wgpudawn": ("0.32.0.1", "0.32.0.2", "0.32.0.3", "0.32.0.4"),
    "wgpu": ("0.30.0", "0.30.1", "0.31.0", "0.31.1", "0.32.0"),
}
VERSIONS_BACKEND = {"wgpudawn": "swiftshader-dawn", "wgpu": "swiftshader"}  # the default; `-- --backend B` wins
VERSIONS_FIXTURES = "results/versions-fixtures"


def release_constraints(text: str, package: str, version: str) -> str:
    """constraints.txt with its pin of `package` replaced by `version` (the other pins kept exact)."""
    kept = [line for line in text.splitlines() if line.split("==")[0].strip().lower() != package]
    return "\n".join([*kept, f"{package}=={version}", ""])


def versions_run_args(package: str, release: str, posargs: list[str]) -> list[str]:
    """`python -m q4gsw run` arguments of a release's session: the required tier on its implementation's SwiftShader
    backend from the shared export, unless the user's arguments name a backend or fixtures."""
    args = ["run", "--tier", "required", "--results", f"results/{versions_session(package, release)}"]
    if not any(a == "--backend" or a.startswith("--backend=") for a in posargs):
        args += ["--backend", VERSIONS_BACKEND[package]]
    if _fixtures_folder(posargs) is None:
        args += ["--fixtures", VERSIONS_FIXTURES]
    return [*args, *posargs]


def versions_session(package: str, release: str) -> str:
    return f"versions-{package}-{release}"


@nox.session(name="versions-fixtures", default=False, tags=["versions"])
def versions_fixtures(session: nox.Session) -> None:
    """The one export every versions-* session runs from (results/versions-fixtures); `-- --suite S` etc."""
    _install(session, "export,report")
    session.run("python", "-m", "q4gsw", "export", "--out", VERSIONS_FIXTURES, "--tier", "required",
                *session.posargs)


def _release(package: str, release: str) -> Callable[[nox.Session], None]:
    def session_body(session: nox.Session) -> None:
        args = versions_run_args(package, release, list(session.posargs))
        fixtures = _fixtures_folder(args)
        if fixtures is None or not fixtures.is_dir():
            session.error(f"no fixtures at {fixtures}: run `nox -s versions-fixtures` first, or pass "
                          "`-- --fixtures DIR` (a folder from `python -m q4gsw export --out DIR`)")
        constraints = Path(session.create_tmp()) / "constraints.txt"
        constraints.write_text(release_constraints(Path(CONSTRAINTS).read_text(), package, release))
        _install(session, run_extras(args), str(constraints))
        session.run("python", "-m", "q4gsw", *args)

    session_body.__doc__ = f"Required tier through {package}=={release} (WebGPU versions axis, docs/versions.md)."
    return session_body


for _package, _releases in WEBGPU_VERSIONS.items():
    for _release_version in _releases:
        nox.session(name=versions_session(_package, _release_version), tags=["versions", _package],
                    default=False)(_release(_package, _release_version))


@nox.session(name="versions-table", default=False, tags=["versions"])
def versions_table(session: nox.Session) -> None:
    """The version x case table and what moved between releases, from the versions-* results present
    (results/versions-table); `-- --bench A.json B.json` adds the speed."""
    _install(session, "report")
    runs = [f"results/{versions_session(p, r)}" for p, rs in WEBGPU_VERSIONS.items() for r in rs
            if (ROOT / "results" / versions_session(p, r) / "results.json").is_file()]
    if not runs:
        session.error("no results/versions-*/results.json: run the versions-* sessions first (`nox -t versions`)")
    session.run("python", "-m", "q4gsw", "report", "--versions", *runs, "--out", "results/versions-table",
                *session.posargs)
