"""Faulty kernels on a real adapter (SwiftShader, real subprocesses): a compile error, a workgroup over the
adapter's limit, an invalid dispatch, a hung kernel, NaN/Inf outputs and an out-of-bounds write each fail their
case with the reason (issue #8), and the run goes on.

Each fault kernel in tests/data is checked with `python -m q4gsw check` on configs a (M=3) then b (M=1): the
kernels misbehave only for M == 3 (except the compile and pipeline errors), so config a fails with the reason and
the run goes on to config b, which still passes. All runs use the session's exported fixtures (`--fixtures`), so
nothing is exported here.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import FAULT_DISPATCH, run_cli, write_fault_matrix
from helpers import DATA, only, results_json


def _check(tmp_path: Path, kernel: str, env: dict[str, str], fixtures: Path, dispatch: str = FAULT_DISPATCH,
           timeout_s: float = 120) -> tuple[subprocess.CompletedProcess[str], dict[str, list[dict]]]:
    matrix = write_fault_matrix(tmp_path / "matrix.toml", timeout_s=timeout_s)
    results = tmp_path / "results"
    done = run_cli("check", "--kernel", str(DATA / kernel), "--dispatch", dispatch, "--backend", "swiftshader",
                   "--matrix", str(matrix), "--fixtures", str(fixtures), "--config", "a", "--config", "b",
                   "--results", str(results), env=env, timeout=300)
    _, by_config = results_json(results)
    assert set(by_config) == {"a", "b"}, done.stdout + done.stderr  # the run went on to config b
    return done, by_config


@pytest.mark.e2e
def test_wgsl_compile_error_fails_each_config_with_the_compiler_message(tmp_path: Path, swiftshader_icd: dict,
                                                                        fault_fixtures: Path) -> None:
    done, results = _check(tmp_path, "compile_error.wgsl", swiftshader_icd, fault_fixtures)
    assert done.returncode == 1
    for config in "ab":
        result = only(results[config])
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
        message = only(results[config])["message"]
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
        result = only(results[config])
        assert result["status"] == "fail"
        assert result["message"] == (f"kernel 'good' dispatch {counts} is outside 1..65535 (max workgroups per "
                                     f"dimension) for M={M}, K=64, N=16, group_size=32")


@pytest.mark.e2e
def test_hung_kernel_is_killed_at_timeout_s_and_the_run_goes_on(tmp_path: Path, swiftshader_icd: dict,
                                                                 fault_fixtures: Path) -> None:
    started = time.monotonic()
    done, results = _check(tmp_path, "hang.wgsl", swiftshader_icd, fault_fixtures, timeout_s=6)
    assert done.returncode == 1
    a = only(results["a"])
    assert a["status"] == "fail"
    assert a["message"] == "GPU run of 'a' timed out after 6 s (timeout_s in matrix.toml) and was killed"
    assert only(results["b"])["status"] == "pass"
    assert time.monotonic() - started < 60
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []  # the hung child was killed, not orphaned


@pytest.mark.e2e
def test_nan_and_inf_outputs_fail_with_count_and_first_index(tmp_path: Path, swiftshader_icd: dict,
                                                             fault_fixtures: Path) -> None:
    done, results = _check(tmp_path, "nonfinite.wgsl", swiftshader_icd, fault_fixtures)
    assert done.returncode == 1
    a = only(results["a"])
    assert a["status"] == "fail"
    assert a["message"] == "2 non-finite outputs, first at (m, n) = (1, 3)"
    assert a["errors"]["nonfinite"] == 2 and a["errors"]["first_nonfinite"] == [1, 3]
    assert only(results["b"])["status"] == "pass"


@pytest.mark.e2e
def test_out_of_bounds_write_is_clamped_into_the_output_and_caught(tmp_path: Path, swiftshader_icd: dict,
                                                                   fault_fixtures: Path) -> None:
    """What really happens on SwiftShader through wgpu 0.32: naga's bounds-check policy clamps the index of the
    write 5 elements past the end to the binding's last element, so the guard words around the output stay intact
    and the fault shows up as a wrong last element (12345 at (2, 15)), which the comparison catches."""
    done, results = _check(tmp_path, "oob_write.wgsl", swiftshader_icd, fault_fixtures)
    assert done.returncode == 1
    a = only(results["a"])
    assert a["status"] == "fail"
    assert a["errors"]["guard_violations"] == 0  # clamped: nothing reached the guard region
    assert a["errors"]["mismatches"] == 1 and a["errors"]["worst_index"] == [2, 15]
    assert a["message"].startswith("1/48 elements out of tolerance; worst (m, n) = (2, 15): got 12345, golden ")
    assert only(results["b"])["status"] == "pass"

