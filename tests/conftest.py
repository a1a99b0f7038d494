"""Shared test helpers: repository paths, tiny matrices, and backend availability."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
MATRIX = REPO / "matrix.toml"


def _keep_bytecode() -> None:
    """Bytecode for this run and its children, kept in the virtualenv (its own pycache/ folder, not beside the
    sources). uv installs no bytecode, and where PYTHONDONTWRITEBYTECODE is set (as on this project's CI machine
    kind) none is ever written: each of the tests' hundreds of `python -m q4gsw` children, every xdist worker and
    every export then compiles all it imports from source (torch alone: half of its 13 CPU seconds of imports).
    Outside a virtualenv, or where the user chose a PYTHONPYCACHEPREFIX, nothing changes."""
    if not sys.dont_write_bytecode or sys.prefix == sys.base_prefix or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    prefix = str(Path(sys.prefix) / "pycache")
    os.environ["PYTHONPYCACHEPREFIX"] = prefix  # inherited by the xdist workers and every child process
    os.environ["PYTHONDONTWRITEBYTECODE"] = ""  # empty is unset, for Python
    sys.pycache_prefix = prefix  # this process: the test modules and q4gsw, imported after this file
    sys.dont_write_bytecode = False


_keep_bytecode()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
            cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `python -m q4gsw ARGS` in a child process, as a user would; without plots (Q4GSW_PLOTS=0: ~0.7 CPU s of
    each run) unless `env` asks for them (test_tiny_matrix_runs_required_and_skips_heavy checks a run's plots)."""
    full_env = {"Q4GSW_PLOTS": "0", **os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "q4gsw", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd)


def cli_in_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m q4gsw ARGS` as run_cli gives it back, but run here (q4gsw.cli.main, stdout and stderr captured,
    the environment restored after): for the many tests of what a command refuses before any work. A child costs
    ~0.3 CPU s of imports; the tests about the process itself (signals, a real run, the interpreter's own
    output) keep run_cli, and test_matrix_errors.test_real_cli_subprocess checks refusals through `python -m`."""
    from q4gsw import cli

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse: --help (0) and its own usage errors (2)
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["python", "-m", "q4gsw", *args], code, out.getvalue(), err.getvalue())


def provisioned_env(backend: str) -> dict[str, str]:
    """Environment that makes wgpu see the backend's driver; skips (locally) when it cannot be provisioned."""
    from q4gsw.matrix.load import load_matrix
    from q4gsw.webgpu.adapter import BackendUnavailable
    from q4gsw.webgpu.provision import provision

    try:
        return provision(load_matrix(MATRIX).backend(backend))
    except BackendUnavailable as exc:
        if os.environ.get("CI"):
            raise  # CI installs the backends: a missing one there is a failure, not a skip
        pytest.skip(f"{backend} unavailable: {exc}")


@pytest.fixture(scope="session")
def swiftshader_env() -> dict[str, str]:
    """Environment that makes wgpu see SwiftShader; skips (locally) when it cannot be provisioned."""
    return provisioned_env("swiftshader")


@pytest.fixture(scope="session")
def lavapipe_env() -> dict[str, str]:
    """Environment that makes wgpu see lavapipe; skips (locally) when it cannot be provisioned."""
    return provisioned_env("lavapipe")


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this pytest run that every xdist worker sees: a session fixture runs once per worker, and its
    base temp is the run's own, one level down (popen-gwN)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def fixture_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fixture cache for the whole run, shared by the end-to-end tests of every xdist worker: the cache's own
    file locks make a worker wait for a fixture another is exporting, instead of exporting it again."""
    return shared_folder(tmp_path_factory, "q4gsw-cache")


# The header of every small test matrix: schema, a linear's group size, SwiftShader.
TINY_MATRIX_HEAD = '''schema_version = 1

[defaults]
group_size = 32

[backend.swiftshader]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"
'''

TINY_MATRIX = "\n" + TINY_MATRIX_HEAD + '''
# The portable kernels, declared as in matrix.toml's [kernel.gemv] / [kernel.tiled].
[kernel.gemv]
file = "{root}/q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl"
when = "M == 1"
dispatch = "ceil(N / (8 * wg_size))"
overrides = {{ wg_size = "min(64, max_invocations_per_workgroup)" }}

[kernel.tiled]
file = "{root}/q4gsw/ops/linear_q4gsw/kernels/q4gsw_tiled.wgsl"
when = "M > 1"
dispatch = "ceil(N / (8 * wg_size)), ceil(M / 8)"
overrides = {{ wg_size = "min(64, max_invocations_per_workgroup)" }}

[[config]]
name = "tiny_gemv"
M = 1
K = 64
N = 16
tier = "required"
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 accumulation error is far below 1e-6." }}

[[config]]
name = "tiny_gemm"
M = 5
K = 96
N = 40
tier = "required"
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=96: fp32 accumulation error is far below 1e-6." }}

[[config]]
name = "tiny_heavy"
M = 1
K = 64
N = 8
tier = "heavy"
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 accumulation error is far below 1e-6." }}
'''


@pytest.fixture
def tiny_matrix(tmp_path: Path) -> Path:
    """A small but real matrix (two required configs, one heavy) that exports in seconds."""
    path = tmp_path / "matrix.toml"
    path.write_text(TINY_MATRIX.format(root=REPO))
    return path


# ------------------------------------------------------------------------------------------------
# Reliability tests (issue #8): a small matrix for fault injection, exported once per session.
# ------------------------------------------------------------------------------------------------

FAULT_MATRIX = '''
schema_version = 1

[defaults]
group_size = 32
timeout_s = {timeout_s}

[backend.swiftshader]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"

# Provisions like SwiftShader, but its adapter_name matches no adapter: a backend that is not there.
[backend.ghost]
api = "Vulkan"
adapter_name = "NoSuchAdapter"
device_type = "CPU"
provision = "swiftshader"

# Both kernels are the tests' own simple reference (tests/data/good.wgsl), so these tests do not depend on how
# the project's kernels evolve; the M > 1 one can be swapped for a fault kernel.
[kernel.gemv]
file = "{root}/tests/data/good.wgsl"
when = "M == 1"
dispatch = "ceil(M * N / 64)"

[kernel.tiled]
file = "{root}/{gemm_kernel}"
when = "M > 1"
dispatch = "{gemm_dispatch}"
{configs}'''

FAULT_CONFIGS = {
    "a": 'name = "a"\nM = 3\nK = 64\nN = 16\ntier = "required"',
    "b": 'name = "b"\nM = 1\nK = 64\nN = 16\ntier = "required"',
    "h": 'name = "h"\nM = 1\nK = 64\nN = 8\ntier = "heavy"',
}
FAULT_TOLERANCE = 'tolerance = { atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 rounding is far below 1e-6." }'


FAULT_DISPATCH = "ceil(M * N / 64)"  # the fault kernels run one invocation per output element


def write_fault_matrix(path: Path, timeout_s: float = 120, order: str = "abh",
                       gemm_kernel: str = "tests/data/good.wgsl", gemm_dispatch: str = FAULT_DISPATCH) -> Path:
    """Configs a (3x64x16, required), b (1x64x16, required), h (1x64x8, heavy), in `order`; backends swiftshader
    and ghost (matches no adapter). The M > 1 kernel can be swapped for a fault kernel from tests/data."""
    configs = "".join(f"\n[[config]]\n{FAULT_CONFIGS[name]}\n{FAULT_TOLERANCE}\n" for name in order)
    path.write_text(FAULT_MATRIX.format(root=REPO, timeout_s=timeout_s, configs=configs, gemm_kernel=gemm_kernel,
                                        gemm_dispatch=gemm_dispatch))
    return path


@pytest.fixture(scope="session")
def fault_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Portable fixtures (`export --out DIR`) of the fault matrix's configs a and b, exported once per run (the
    first xdist worker to need them exports, the others wait on the lock). Tests copy them; they must not modify
    this folder."""
    folder = shared_folder(tmp_path_factory, "fault-fixtures")
    exported = folder / "exported"  # written last: the export finished and passed
    with FileLock(str(folder) + ".lock"):
        if not exported.exists():
            matrix = write_fault_matrix(folder / "matrix.toml")
            done = run_cli("export", "--matrix", str(matrix), "--out", str(folder / "out"), "--config", "a",
                           "--config", "b", timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            exported.touch()
    return folder / "out"


@pytest.fixture(scope="session")
def swiftshader_icd(swiftshader_env: dict[str, str]) -> dict[str, str]:
    """Child environment pointing q4gsw at the already provisioned SwiftShader ICD, so tests that use their own
    Q4GSW_CACHE do not provision (download) it again."""
    return {"Q4GSW_SWIFTSHADER_ICD": swiftshader_env["VK_ICD_FILENAMES"]}


@pytest.fixture
def quiet_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports written in-process without the user's $GITHUB_STEP_SUMMARY and without pyplot (the drift tests read
    the reports' text; drawing plots would only cost time)."""
    from q4gsw.report import plots

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)

    def unavailable() -> None:
        raise ImportError("plots disabled in this test")

    monkeypatch.setattr(plots, "_load_pyplot", unavailable)
