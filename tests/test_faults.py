"""Backend faults, required-versus-skipped, and Ctrl-C (issue #8), on real SwiftShader in real subprocesses.

Each fault kernel in tests/data is checked with `python -m q4gsw check` on configs a (M=3) then b (M=1): the
kernels misbehave only for M == 3 (except the compile and pipeline errors), so config a fails with the reason and
the run goes on to config b, which still passes. All runs use the session's exported fixtures (`--fixtures`), so
nothing is exported here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import REPO, run_cli, write_fault_matrix
from helpers import random_packed, write_fixture

from q4gsw.matrix import load_matrix

DATA = REPO / "tests" / "data"
DISPATCH = "ceil(M * N / 64)"  # the fault kernels run one invocation per output element


def _results(folder: Path) -> tuple[dict, dict[str, list[dict]]]:
    payload = json.loads((folder / "results.json").read_text())
    by_config: dict[str, list[dict]] = {}
    for result in payload["results"]:
        by_config.setdefault(result["config"], []).append(result)
    return payload, by_config


def _check(tmp_path: Path, kernel: str, env: dict[str, str], fixtures: Path, dispatch: str = DISPATCH,
           timeout_s: float = 120) -> tuple[subprocess.CompletedProcess[str], dict[str, list[dict]]]:
    matrix = write_fault_matrix(tmp_path / "matrix.toml", timeout_s=timeout_s)
    results = tmp_path / "results"
    done = run_cli("check", "--kernel", str(DATA / kernel), "--dispatch", dispatch, "--backend", "swiftshader",
                   "--matrix", str(matrix), "--fixtures", str(fixtures), "--config", "a", "--config", "b",
                   "--results", str(results), env=env, timeout=300)
    _, by_config = _results(results)
    assert set(by_config) == {"a", "b"}, done.stdout + done.stderr  # the run went on to config b
    return done, by_config


def _only(results: list[dict]) -> dict:
    assert len(results) == 1, results
    return results[0]


@pytest.mark.e2e
def test_wgsl_compile_error_fails_each_config_with_the_compiler_message(tmp_path: Path, swiftshader_icd: dict,
                                                                        fault_fixtures: Path) -> None:
    done, results = _check(tmp_path, "compile_error.wgsl", swiftshader_icd, fault_fixtures)
    assert done.returncode == 1
    for config in "ab":
        result = _only(results[config])
        assert result["status"] == "fail"
        # The compiler that rejected it, on which adapter, and its own message.
        assert result["message"].startswith("kernel rejected by naga (wgpu-native) on SwiftShader")
        assert "GPUValidationError" in result["message"] and "wgpuDeviceCreateShaderModule" in result["message"]
        assert "the type of `broken` is expected to be `f32`, but got `u32`" in result["message"]
        assert result["errors"] is None  # never ran: no comparison
    assert "FAIL a/compile_error/ramp@swiftshader: kernel rejected by naga (wgpu-native)" in done.stdout


@pytest.mark.e2e
def test_workgroup_over_the_adapter_limit_fails_pipeline_creation(tmp_path: Path, swiftshader_icd: dict,
                                                                  fault_fixtures: Path) -> None:
    done, results = _check(tmp_path, "too_many_invocations.wgsl", swiftshader_icd, fault_fixtures, dispatch="1")
    assert done.returncode == 1
    for config in "ab":
        message = _only(results[config])["message"]
        assert "wgpuDeviceCreateComputePipeline" in message
        assert "workgroup size [1024, 1, 1] (1024 total invocations)" in message
        assert "max_compute_invocations_per_workgroup" in message


@pytest.mark.e2e
@pytest.mark.parametrize("dispatch, counts", [("70000", "(70000,)"), ("1, 0", "(1, 0)")])
def test_invalid_dispatch_fails(tmp_path: Path, swiftshader_icd: dict, fault_fixtures: Path, dispatch: str,
                                counts: str) -> None:
    done, results = _check(tmp_path, "good.wgsl", swiftshader_icd, fault_fixtures, dispatch=dispatch)
    assert done.returncode == 1, done.stdout
    for config, M in (("a", 3), ("b", 1)):
        result = _only(results[config])
        assert result["status"] == "fail"
        assert result["message"] == (f"kernel 'good' dispatch {counts} is outside 1..65535 (max workgroups per "
                                     f"dimension) for M={M}, N=16")


@pytest.mark.e2e
def test_hung_kernel_is_killed_at_timeout_s_and_the_run_goes_on(tmp_path: Path, swiftshader_icd: dict,
                                                                 fault_fixtures: Path) -> None:
    started = time.monotonic()
    done, results = _check(tmp_path, "hang.wgsl", swiftshader_icd, fault_fixtures, timeout_s=6)
    assert done.returncode == 1
    a = _only(results["a"])
    assert a["status"] == "fail"
    assert a["message"] == "GPU run of 'a' timed out after 6 s (timeout_s in matrix.toml) and was killed"
    assert _only(results["b"])["status"] == "pass"
    assert time.monotonic() - started < 60
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []  # the hung child was killed, not orphaned


@pytest.mark.e2e
def test_nan_and_inf_outputs_fail_with_count_and_first_index(tmp_path: Path, swiftshader_icd: dict,
                                                             fault_fixtures: Path) -> None:
    done, results = _check(tmp_path, "nonfinite.wgsl", swiftshader_icd, fault_fixtures)
    assert done.returncode == 1
    a = _only(results["a"])
    assert a["status"] == "fail"
    assert a["message"] == "2 non-finite outputs, first at (m, n) = (1, 3)"
    assert a["errors"]["nonfinite"] == 2 and a["errors"]["first_nonfinite"] == [1, 3]
    assert _only(results["b"])["status"] == "pass"


@pytest.mark.e2e
def test_out_of_bounds_write_is_clamped_into_the_output_and_caught(tmp_path: Path, swiftshader_icd: dict,
                                                                   fault_fixtures: Path) -> None:
    """What really happens on SwiftShader through wgpu 0.32: naga's bounds-check policy clamps the index of the
    write 5 elements past the end to the binding's last element, so the guard words around the output stay intact
    and the fault shows up as a wrong last element (12345 at (2, 15)), which the comparison catches."""
    done, results = _check(tmp_path, "oob_write.wgsl", swiftshader_icd, fault_fixtures)
    assert done.returncode == 1
    a = _only(results["a"])
    assert a["status"] == "fail"
    assert a["errors"]["guard_violations"] == 0  # clamped: nothing reached the guard region
    assert a["errors"]["mismatches"] == 1 and a["errors"]["worst_index"] == [2, 15]
    assert a["message"].startswith("1/48 elements out of tolerance; worst (m, n) = (2, 15): got 12345, golden ")
    assert _only(results["b"])["status"] == "pass"


# ------------------------------------------------------------------------------------------------
# Required versus skipped
# ------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_backend_without_its_adapter_fails_required_configs(tmp_path: Path, swiftshader_icd: dict,
                                                            fault_fixtures: Path) -> None:
    matrix = write_fault_matrix(tmp_path / "matrix.toml")
    done = run_cli("run", "--matrix", str(matrix), "--backend", "ghost", "--fixtures", str(fault_fixtures),
                   "--results", str(tmp_path / "r"), env=swiftshader_icd, timeout=300)
    assert done.returncode == 1
    _, results = _results(tmp_path / "r")
    assert [_only(results[c])["status"] for c in "abh"] == ["fail", "fail", "skip"]
    for config in "ab":  # the adapter is probed before anything is exported
        assert _only(results[config])["message"] == (
            "backend 'ghost' unavailable: backend 'ghost' needs an adapter matching /NoSuchAdapter/ (CPU, Vulkan) "
            "through wgpu-native; adapters seen: SwiftShader Device (Subzero) (CPU, Vulkan). No fallback to another "
            "adapter or WebGPU implementation is made.")
    assert "error: backend 'ghost' unavailable: " in done.stdout  # on the run's console, with its clock
    assert _only(results["h"])["message"] == "heavy: run `nox -s heavy`"


def test_backend_that_cannot_be_provisioned_fails_required_configs(tmp_path: Path) -> None:
    """Offline: provisioning fails before any adapter is touched (fixtures written with numpy)."""
    matrix = write_fault_matrix(tmp_path / "matrix.toml")
    loaded = load_matrix(matrix)
    fixtures = tmp_path / "fixtures"
    for name in "ab":
        config = loaded.config(name)
        write_fixture(fixtures, config, random_packed(config.N, config.K, config.group_size, np.random.default_rng(8)))
    missing = tmp_path / "no-such-icd.json"
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(fixtures),
                   "--results", str(tmp_path / "r"), env={"Q4GSW_SWIFTSHADER_ICD": str(missing)}, timeout=120)
    assert done.returncode == 1
    _, results = _results(tmp_path / "r")
    assert [_only(results[c])["status"] for c in "abh"] == ["fail", "fail", "skip"]
    assert _only(results["a"])["message"] == (
        f"backend 'swiftshader' unavailable: Q4GSW_SWIFTSHADER_ICD={missing} does not exist: point it at a "
        "vk_swiftshader_icd.json whose library_path is an absolute path")


@pytest.mark.e2e
def test_failed_export_fails_required_configs(tmp_path: Path, swiftshader_icd: dict) -> None:
    """An export that fails (here: torch cannot be imported) fails each required config with the reason; the export
    process goes on to the next config. (A cache that cannot be used at all is a usage error before any work:
    tests/test_reliability.py.)"""
    matrix = write_fault_matrix(tmp_path / "matrix.toml")
    broken = tmp_path / "broken-site" / "torch"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("torch is broken here (a test)")\n')
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--cache", str(tmp_path / "cache"),
                   "--results", str(tmp_path / "r"), env={**swiftshader_icd, "PYTHONPATH": str(broken.parent)},
                   timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    _, results = _results(tmp_path / "r")
    assert [_only(results[c])["status"] for c in "abh"] == ["fail", "fail", "skip"]
    for config in "ab":
        message = _only(results[config])["message"]
        assert message == f"export of '{config}' failed: ImportError: torch is broken here (a test)", message


@pytest.mark.e2e
def test_heavy_not_selected_is_a_skip_with_its_reason(tmp_path: Path, swiftshader_icd: dict,
                                                      fault_fixtures: Path) -> None:
    matrix = write_fault_matrix(tmp_path / "matrix.toml", order="hb")
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(fault_fixtures),
                   "--tier", "required", "--results", str(tmp_path / "r"), env=swiftshader_icd, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    _, results = _results(tmp_path / "r")
    assert _only(results["b"])["status"] == "pass"
    assert _only(results["h"])["status"] == "skip" and _only(results["h"])["message"] == "heavy: run `nox -s heavy`"
    assert "SKIP h: heavy: run `nox -s heavy`" in done.stdout


# ------------------------------------------------------------------------------------------------
# Ctrl-C
# ------------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_cleanly_with_partial_results(tmp_path: Path, swiftshader_icd: dict, fault_fixtures: Path,
                                                      signum: signal.Signals) -> None:
    """b (M=1) passes, then a (M=3) hangs in its kernel; the signal goes to the run's whole process group (as Ctrl-C
    in a terminal does). The children run in their own sessions, so the parent must kill them itself."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(fault_fixtures, fixtures)
    matrix = write_fault_matrix(tmp_path / "matrix.toml", order="bah", gemm_kernel="tests/data/hang.wgsl",
                                gemm_dispatch=DISPATCH)
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "q4gsw", "run", "--matrix", str(matrix), "--backend",
                             "swiftshader", "--fixtures", str(fixtures), "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, **swiftshader_icd}, start_new_session=True,
                            # even if this pytest was started with SIGINT ignored (a background job of a script)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "(2/2) a " in line:  # b is done; a's child is starting
                break
        deadline = time.monotonic() + 60
        while not any("_child" in " ".join(c.cmdline()) for c in psutil.Process(proc.pid).children(recursive=True)):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            time.sleep(0.1)
        time.sleep(5)  # the child imports wgpu, opens SwiftShader and is then spinning in a's kernel
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "".join(seen)
        os.killpg(proc.pid, signum)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output
    assert "interrupted: writing the partial results" in output
    payload, by_config = _results(results)
    assert payload["interrupted"] is True
    assert _only(by_config["b"])["status"] == "pass"
    assert _only(by_config["a"]) == {**_only(by_config["a"]), "status": "skip",
                                     "message": "not run: the run was interrupted"}
    assert _only(by_config["h"])["status"] == "skip"
    alive = psutil.wait_procs(children, timeout=10)[1]
    assert alive == [], f"children left running: {alive}"
