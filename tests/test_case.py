"""execute_case in process with a fake device (offline): the one place a case is judged, step by step.

The fake device computes what a kernel would from the op's bindings with numpy (or a deliberate fault),
so the verdict logic, the op's golden and the bindings are exercised without any WebGPU adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_config, random_packed

from q4gsw.case import COMPILE_FAILURE, Problem, execute_case
from q4gsw.cases import Case
from q4gsw.matrix.load import Backend, Tolerance, make_kernel
from q4gsw.matrix.values import AdapterInfo
from q4gsw.ops import op_for
from q4gsw.ops.base import Bindings
from q4gsw.webgpu.execute import GpuRun, KernelCompileError

ADAPTER = AdapterInfo(name="Fake Device", device_type="CPU", api="Vulkan", webgpu="wgpu-native",
                      features=("subgroup",), limits={"max-compute-invocations-per-workgroup": 256,
                                                      "max-compute-workgroups-per-dimension": 65535})
BACKEND = Backend(name="fake", description="", api="Vulkan", adapter_name="Fake", device_type="CPU",
                  provision="native")
TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4, justification="fp32 accumulation at K = 256")


@dataclass
class FakeDevice:
    """What execute_case needs of webgpu.execute.Device; `fault` turns the kernel into a wrong one."""

    fault: str = ""
    info: AdapterInfo = ADAPTER
    timestamps: bool = False
    dispatched: list[tuple[int, ...]] = field(default_factory=list)
    packed: Any = None  # the constants its numpy "kernel" multiplies with

    def pipeline(self, source: str, overrides: dict[str, Any], label: str, bindings: Bindings) -> None:
        if self.fault == "compile":
            raise KernelCompileError("error: unknown identifier 'oops'\n  ┌─ wgsl:3:5")

    def run(self, source: str, label: str, overrides: dict[str, Any], workgroups: tuple[int, ...],
            bindings: Bindings, repeats: int = 1, before: Any = None) -> GpuRun:
        self.dispatched.append(workgroups)
        if self.fault == "device-lost":
            raise RuntimeError("device lost")
        x = next(b.data for b in bindings.inputs if b.index == 1)
        packed = self.packed
        y = op_for("linear_q4gsw").cpu_reference(x, packed).astype(np.float32)
        if self.fault == "wrong-element":
            y[0, 3] += 0.5
        if self.fault == "nan":
            y[0, 1] = np.nan
        guards = [4] if self.fault == "out-of-bounds" else []
        return GpuRun(output=y.reshape(bindings.output_shape), guard_violations=guards, wall_s=0.01, gpu_s=None,
                      workgroups=workgroups, overrides=dict(overrides))


def _case_and_problem(tmp_path: Path, fault: str = "") -> tuple[Case, Problem, FakeDevice]:
    config = make_config("fake_gemv", 1, 256, 64, 32, tolerance=TOLERANCE)
    op = op_for(config)
    packed = random_packed(64, 256, 32, np.random.default_rng(3))
    x = np.random.default_rng(4).standard_normal((1, 256)).astype(np.float32)
    kernel_file = tmp_path / "k.wgsl"
    kernel_file.write_text("// a fake device does not compile WGSL\n")
    kernel = make_kernel("fake_kernel", str(kernel_file), "ceil(N / 64)", when="M == 1")
    case = Case(config=config, kernel=kernel, input="ramp", backend=BACKEND, tolerance=TOLERANCE)
    problem = Problem(constants=packed, x={"ramp": x}, golden={"ramp": op.golden(x, packed)})
    return case, problem, FakeDevice(fault=fault, packed=packed)


def test_a_correct_kernel_passes_with_its_errors_recorded(tmp_path):
    case, problem, device = _case_and_problem(tmp_path)
    result = execute_case(case, device, problem, tmp_path)
    assert result.status == "pass", result.message
    assert result.errors is not None and result.errors.max_abs < 1e-5 and result.errors.headroom < 1
    assert result.op == "linear_q4gsw" and result.adapter == ADAPTER and result.tolerance == TOLERANCE
    assert device.dispatched == [(1,)]  # ceil(N / 64), evaluated with the adapter's limits
    assert result.timings.gpu_timing == "wall" and result.timings.gflops is not None


@pytest.mark.parametrize("fault, status, message", [
    ("wrong-element", "fail", "1/64 elements out of tolerance; worst (m, n) = (0, 3)"),
    ("nan", "fail", "1 non-finite outputs, first at (m, n) = (0, 1)"),
    ("out-of-bounds", "fail", "out-of-bounds write: 1 guard words changed, first at byte offset 4"),
    ("compile", "fail", f"{COMPILE_FAILURE} by naga (wgpu-native) on Fake Device: error: unknown identifier"),
    ("device-lost", "fail", "kernel 'fake_kernel' failed on Fake Device through wgpu-native: RuntimeError"),
])
def test_a_faulty_kernel_fails_with_the_reason(tmp_path, fault, status, message):
    case, problem, device = _case_and_problem(tmp_path, fault)
    result = execute_case(case, device, problem, tmp_path)
    assert result.status == status
    assert message in result.message, result.message


def test_a_kernel_the_adapter_cannot_run_is_unsupported_not_failed(tmp_path):
    case, problem, device = _case_and_problem(tmp_path)
    needy = replace(case, kernel=replace(case.kernel, requires_features=("shader-f16",)))
    result = execute_case(needy, device, problem, tmp_path)
    assert result.status == "unsupported" and "shader-f16" in result.message
    assert device.dispatched == []


def test_the_golden_is_the_ops_and_a_wrong_golden_fails(tmp_path):
    case, problem, device = _case_and_problem(tmp_path)
    shifted = replace(problem, golden={"ramp": problem.golden["ramp"] + 1e-3})
    result = execute_case(case, device, shifted, tmp_path)
    assert result.status == "fail" and "64/64 elements out of tolerance" in result.message


def test_upstream_verdict_is_abs_or_rel(tmp_path):
    """ExecuTorch's own test passes an element within atol OR within rtol (relative to max(|g|, 1e-6))."""
    from q4gsw.case import upstream_verdict

    case = _case_and_problem(tmp_path)[0]
    case = replace(case, config=replace(case.config, upstream_tolerance=Tolerance(atol=1e-4, rtol=1e-3)))
    g = np.array([[1000.0, 1e-3]])
    assert upstream_verdict(np.array([[1000.5, 1e-3]]), g, case) == "pass"  # rel 5e-4 only: passes by rtol
    assert upstream_verdict(np.array([[1000.0, 1.05e-3]]), g, case) == "pass"  # abs 5e-5 only: passes by atol
    assert upstream_verdict(np.array([[1002.0, 1e-3]]), g, case).startswith("fail (1 elements")


def test_load_problem_refuses_a_golden_computed_from_another_input(tmp_path):
    """A fixture records the sha256 of each input its golden was computed from; an input regenerated differently
    (another numpy, another formula) must not be judged against that golden."""
    import json

    from helpers import write_fixture

    from q4gsw.case import load_problem
    from q4gsw.export.fixtures import MANIFEST

    config = make_config("sha", 1, 64, 16, 32, tolerance=TOLERANCE)
    path = write_fixture(tmp_path, config, random_packed(16, 64, 32, np.random.default_rng(5)))
    problem = load_problem(config, ("ramp",), path, None)
    assert np.array_equal(problem.golden["ramp"], op_for(config).golden(problem.x["ramp"], problem.constants))
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["input_sha256"]["ramp"] = "0" * 64
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RuntimeError, match="input 'ramp' regenerated here differs"):
        load_problem(config, ("ramp",), path, None)


def test_upstream_verdict_bounds_are_inclusive_over_max_g_1e6_and_empty_without_a_bound(tmp_path):
    from q4gsw.case import upstream_verdict

    case = _case_and_problem(tmp_path)[0]
    assert upstream_verdict(np.ones((1, 1)), np.ones((1, 1)), replace(case, config=replace(
        case.config, upstream_tolerance=None))) == ""  # no upstream tolerance: no upstream verdict
    inclusive = replace(case, config=replace(case.config, upstream_tolerance=Tolerance(atol=0.5, rtol=0.25)))
    g = np.array([[1.0, 4.0]])
    assert upstream_verdict(np.array([[1.5, 4.0]]), g, inclusive) == "pass"  # |err| == atol (rel 0.5 > rtol)
    assert upstream_verdict(np.array([[1.0, 5.0]]), g, inclusive) == "pass"  # |err|/|g| == rtol (|err| 1 > atol)
    relative = replace(case, config=replace(case.config, upstream_tolerance=Tolerance(atol=1e-3, rtol=0.25)))
    # |g| = 0.5 is above 1e-6: rel = 0.2 / 0.5 = 0.4 > rtol fails (over max(|g|, 1.000001) it would pass)
    assert upstream_verdict(np.array([[0.7]]), np.array([[0.5]]), relative).startswith("fail (1 elements")
