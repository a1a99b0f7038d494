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


# ---- everything a Result records, with a device that checks what it is given (issue #29's mutation audit) ----


@dataclass
class CheckingDevice(FakeDevice):
    """A FakeDevice whose "kernel" multiplies with the constants bound to it (b2 weight words, b3 scales, b5 Params),
    not with ones it was handed, and that records each pipeline and dispatch it is asked for."""

    pipelines: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    runs: list[tuple[str, str, int]] = field(default_factory=list)
    gpu_s: float | None = None

    def pipeline(self, source: str, overrides: dict[str, Any], label: str, bindings: Bindings) -> None:
        self.pipelines.append((source, dict(overrides), label))
        super().pipeline(source, overrides, label, bindings)

    def run(self, source: str, label: str, overrides: dict[str, Any], workgroups: tuple[int, ...],
            bindings: Bindings, repeats: int = 1, before: Any = None) -> GpuRun:
        from q4gsw.ops.linear_q4gsw.layout import PackedLinear

        self.runs.append((source, label, repeats))
        bound = {b.index: b.data for b in bindings.inputs}
        n = int(bound[5][1])
        self.packed = PackedLinear(weight_packed=bound[2].view(np.uint8).reshape(n, -1), scales=bound[3],
                                   group_size=int(bound[5][4]))
        return replace(super().run(source, label, overrides, workgroups, bindings, repeats, before), gpu_s=self.gpu_s)


KERNEL_TEXT = "enable subgroups;\n// a fake device does not compile WGSL\n"
TIMINGS = {"unpack_s": 0.5, "golden_s": 0.25, "fixture_export_s": 3.0, "fixture_golden_s": 2.0}


def _recorded_case(tmp_path: Path, **device: Any) -> tuple[Case, Problem, CheckingDevice]:
    case, problem, _ = _case_and_problem(tmp_path)
    (tmp_path / "k.wgsl").write_text(KERNEL_TEXT)
    config = replace(case.config, weight_seed=9, drift_factor=3.0)
    case = replace(case, config=config, kernel=replace(case.kernel, notes=("a stale header",)))
    problem = replace(problem, fixture_key="key-1", timings=dict(TIMINGS))
    return case, problem, CheckingDevice(**device)


def test_a_passing_case_records_the_case_where_its_bytes_came_from_and_its_timings(tmp_path):
    import resource

    import q4gsw

    case, problem, device = _recorded_case(tmp_path)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = execute_case(case, device, problem, tmp_path)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert result.status == "pass", result.message
    assert device.pipelines == [(KERNEL_TEXT, {}, "fake_kernel")]  # the kernel's own text, under its own name
    assert device.runs == [(KERNEL_TEXT, "fake_kernel", 1)]
    assert result.message.endswith("; note: a stale header")
    assert (result.config, result.backend, result.case_id) == ("fake_gemv", "fake", "fake_gemv/fake_kernel/ramp@fake")
    assert (result.webgpu, result.tier, result.suite, result.op) == ("wgpu-native", "required", "test", "linear_q4gsw")
    assert (result.kernel, result.input, result.role, result.routed) == ("fake_kernel", "ramp", "subject", "")
    assert result.shape.dims == {"M": 1, "K": 256, "N": 64, "group_size": 32} and result.shape.text
    assert result.tolerance == TOLERANCE and result.drift_factor == 3.0 and result.workgroups == (1,)
    assert "fake_gemv" in result.reproduce and result.upstream == ""
    assert rss_before <= result.peak_rss_bytes <= rss_after
    p = result.provenance
    assert (p.fixture, p.weights, p.weight_seed, p.input) == ("key-1", "random", 9, "ramp")
    assert p.kernel_source == str(tmp_path / "k.wgsl")
    assert p.source_notes[0] == "a stale header" and "enable subgroups" in p.source_notes[1]  # naga's adjustment
    assert len(p.source_notes) == 2
    assert p.versions["q4gsw"] == q4gsw.__version__ and p.versions["numpy"] == np.__version__
    assert {"torch", "executorch", "torchao", "wgpu", "wgpudawn"} <= set(p.versions)
    t = result.timings
    assert (t.unpack_s, t.golden_s, t.fixture_export_s, t.fixture_golden_s) == (0.5, 0.25, 3.0, 2.0)
    assert (t.gpu_s, t.gpu_wall_s, t.gpu_timing, t.gpu_samples_s, t.gpu_warmup_s) == (0.01, 0.01, "wall", (), None)
    assert t.gflops == pytest.approx(2 * 1 * 256 * 64 / 0.01 / 1e9) and 0 <= t.compare_s < 1
    h = result.errors.histogram
    assert sum(h["counts"]) + h["zero"] + h["below"] + h["above"] + h["nonfinite"] == 64  # every output counted
    assert result.errors.guard_violations == 0


def test_a_kernel_without_notes_has_none_in_its_message_and_an_upstream_verdict_is_recorded(tmp_path):
    case, problem, device = _recorded_case(tmp_path)
    case = replace(case, kernel=replace(case.kernel, notes=()),
                   config=replace(case.config, upstream_tolerance=Tolerance(atol=1e-5, rtol=1e-4)))
    result = execute_case(case, device, problem, tmp_path)
    assert result.status == "pass" and "note" not in result.message and result.upstream == "pass"
    assert result.provenance.source_notes == (result.provenance.source_notes[0],)  # naga's adjustment alone


def test_timestamps_time_a_single_dispatch_and_a_zero_timestamp_is_unmeasured(tmp_path):
    case, problem, device = _recorded_case(tmp_path, timestamps=True, gpu_s=0.002)
    t = execute_case(case, device, problem, tmp_path).timings
    assert (t.gpu_s, t.gpu_timing) == (0.002, "gpu") and t.gflops == pytest.approx(2 * 256 * 64 / 0.002 / 1e9)
    case, problem, device = _recorded_case(tmp_path, timestamps=True, gpu_s=0.0)
    t = execute_case(case, device, problem, tmp_path).timings
    assert (t.gpu_s, t.gpu_timing, t.gflops) == (None, "unmeasured", None)


def test_a_guard_violation_is_counted_in_the_errors(tmp_path):
    case, problem, device = _case_and_problem(tmp_path, "out-of-bounds")
    result = execute_case(case, device, problem, tmp_path)
    assert result.status == "fail" and result.errors.guard_violations == 1


def test_a_compile_error_keeps_its_last_eight_lines(tmp_path):
    case, problem, device = _case_and_problem(tmp_path)

    class Rejecting(FakeDevice):
        def pipeline(self, *args: Any) -> None:
            raise KernelCompileError("\n".join(f"line {i}" for i in range(1, 11)))

    result = execute_case(case, Rejecting(packed=device.packed), problem, tmp_path)
    assert result.status == "fail" and "line 3" in result.message and "line 10" in result.message
    assert "line 2\n" not in result.message and "line 1\n" not in result.message
    assert result.adapter == ADAPTER and result.provenance.input == "ramp"


def test_a_device_error_records_no_workgroups_and_keeps_the_provenance(tmp_path):
    case, problem, device = _case_and_problem(tmp_path, "device-lost")
    result = execute_case(case, device, problem, tmp_path)
    assert result.message.endswith("RuntimeError: device lost")
    assert result.workgroups == () and result.adapter == ADAPTER and result.provenance.input == "ramp"


def test_a_kernel_named_on_the_command_line_that_cannot_run_fails_instead_of_unsupported(tmp_path, monkeypatch):
    case, problem, device = _case_and_problem(tmp_path)
    monkeypatch.setattr(type(op_for("linear_q4gsw")), "before_bindings", lambda self, x, constants: Bindings(
        output_index=None, output_shape=(), inputs=()))  # a chain's first kernel, as dq8ca's ops have one
    needy = replace(case.kernel, requires_features=("shader-f16",))
    checked = execute_case(replace(case, kernel=replace(needy, origin="check:k.wgsl")), device, problem, tmp_path)
    assert checked.status == "fail" and "shader-f16" in checked.message and checked.adapter == ADAPTER
    before = replace(case.kernel, name="first", requires_features=("shader-f16",))
    chained = replace(case, kernel=replace(case.kernel, before=before))
    result = execute_case(chained, device, problem, tmp_path)
    assert result.status == "unsupported" and result.message.startswith("the kernel it runs after, first: ")
    assert "shader-f16" in result.message and result.adapter == ADAPTER
    chained_check = replace(chained, kernel=replace(chained.kernel, origin="check:k.wgsl"))
    assert execute_case(chained_check, device, problem, tmp_path).status == "fail"
    assert device.dispatched == []


def test_execute_config_fails_every_case_when_the_device_or_fixture_cannot_be_had(tmp_path):
    from q4gsw.case import execute_config

    case, _, device = _case_and_problem(tmp_path)
    other = replace(case, input="normal")
    failed = list(execute_config([case, other], None, None, tmp_path, opened=(None, "no adapter: gone")))
    assert [(r.case_id, r.status, r.message) for r in failed] == [
        (case.id, "fail", "no adapter: gone"), (other.id, "fail", "no adapter: gone")]
    missing = list(execute_config([case], tmp_path / "nowhere", None, tmp_path, opened=(device, "")))
    assert len(missing) == 1 and missing[0].status == "fail"
    assert missing[0].message.startswith("FixtureError: ") and "nowhere" in missing[0].message


def test_execute_config_runs_each_case_on_the_opened_device_with_a_synthetic_problem(tmp_path):
    from q4gsw.case import execute_config

    case, _, _ = _case_and_problem(tmp_path)
    device = CheckingDevice()
    results = list(execute_config([case, replace(case, input="normal")], None, 5, tmp_path, opened=(device, "")))
    assert [r.status for r in results] == ["pass", "pass"], [r.message for r in results]
    assert [r.input for r in results] == ["ramp", "normal"] and len(device.runs) == 2


def _dequantized(packed: Any) -> np.ndarray:
    """w[n, k] = (nibble - 8) * scale[k // group, n], the nibbles of a byte lower first, rounded to fp32."""
    b = np.asarray(packed.weight_packed, dtype=np.int64)
    q = np.empty((b.shape[0], 2 * b.shape[1]), dtype=np.int64)
    q[:, 0::2], q[:, 1::2] = (b & 15) - 8, (b >> 4) - 8
    s = np.repeat(np.asarray(packed.scales, dtype=np.float32), packed.group_size, axis=0).T[:, :q.shape[1]]
    return (q.astype(np.float32) * s).astype(np.float64)


def test_load_problem_without_a_fixture_is_synthetic_and_seeded(tmp_path):
    from q4gsw.case import load_problem

    config = make_config("synthetic", 3, 64, 16, 32, tolerance=TOLERANCE)
    problem = load_problem(config, ("ramp", "normal"), None, 5)
    x = problem.x["ramp"]
    assert x.shape == (3, 64) and x.dtype == np.float32 and problem.x["normal"] is x  # one input for every name
    w = _dequantized(problem.constants)
    assert w.shape == (16, 64)
    for name in ("ramp", "normal"):
        assert np.allclose(problem.golden[name], x.astype(np.float64) @ w.T, rtol=1e-12, atol=1e-12)
    assert problem.fixture_key == "" and set(problem.timings) == {"golden_s"} and problem.timings["golden_s"] >= 0
    other = load_problem(config, ("ramp",), None, 6)
    assert not np.array_equal(other.x["ramp"], x)  # the seed chooses the input
    assert not np.array_equal(other.constants.weight_packed, problem.constants.weight_packed)  # and the weights
    unseeded, zero = load_problem(config, ("ramp",), None, None), load_problem(config, ("ramp",), None, 0)
    assert np.array_equal(unseeded.x["ramp"], zero.x["ramp"])  # no seed is seed 0
    assert np.array_equal(unseeded.constants.weight_packed, zero.constants.weight_packed)


def test_load_problem_from_a_fixture_keeps_its_key_and_timings_and_computes_a_missing_golden(tmp_path, capsys):
    import json

    from helpers import write_fixture

    from q4gsw.case import load_problem
    from q4gsw.export.fixtures import MANIFEST

    config = make_config("keyed", 2, 64, 16, 32, ("ramp", "normal"), tolerance=TOLERANCE)
    packed = random_packed(16, 64, 32, np.random.default_rng(6))
    path = write_fixture(tmp_path, config, packed, goldens={"ramp": np.full((2, 16), 7.0),
                                                            "normal": np.full((2, 16), 8.0)})
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["timings"] = {"export_s": 4.0, "golden_s": 1.5}
    del manifest["files"]["golden-normal.npy"]  # a fixture that does not carry this golden
    (path / MANIFEST).write_text(json.dumps(manifest))
    problem = load_problem(config, ("ramp", "normal"), path, None)
    assert problem.fixture_key == "synthetic-keyed"
    assert problem.timings["fixture_export_s"] == 4.0 and problem.timings["fixture_golden_s"] == 1.5
    assert problem.timings["unpack_s"] >= 0 and problem.timings["golden_s"] >= 0
    assert np.array_equal(problem.golden["ramp"], np.full((2, 16), 7.0))  # the stored golden, not recomputed
    x = problem.x["normal"]
    assert np.allclose(problem.golden["normal"], x.astype(np.float64) @ _dequantized(packed).T, rtol=1e-12,
                       atol=1e-12)
    assert "golden for 'normal' not in the fixture: computing it in fp64" in capsys.readouterr().out
    assert "golden for 'ramp'" not in capsys.readouterr().out
    del manifest["key"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert load_problem(config, ("ramp",), path, None).fixture_key == str(path)  # no key: the folder


# ---- open_device and warm_up with the adapter and the device replaced (no WebGPU) ----


def _open_with(monkeypatch, cases: list[Case], features: tuple[str, ...], fails: bool = False) -> tuple[Any, str,
                                                                                                        list[Any]]:
    from q4gsw.case import open_device
    from q4gsw.webgpu import adapter as adapter_module
    from q4gsw.webgpu import execute

    asked: list[Any] = []
    info = replace(ADAPTER, features=features)

    def select_adapter(backend: Backend) -> tuple[str, AdapterInfo]:
        asked.append(backend)
        if fails:
            raise RuntimeError("no adapter matches 'Fake'")
        return "the adapter", info

    class Opened:
        def __init__(self, adapter: Any, info: AdapterInfo, want_features: tuple[str, ...] = ()) -> None:
            self.args = (adapter, info, want_features)

    monkeypatch.setattr(adapter_module, "select_adapter", select_adapter)
    monkeypatch.setattr(execute, "Device", Opened)
    device, why = open_device(cases)
    return device, why, asked


def test_open_device_asks_for_the_features_the_kernels_need_that_the_adapter_has(tmp_path, monkeypatch):
    case = _case_and_problem(tmp_path)[0]
    needs = [replace(case, kernel=replace(case.kernel, requires_features=f)) for f in
             (("subgroup", "shader-f16"), ("timestamp-query",), ("subgroup",))]
    device, why, asked = _open_with(monkeypatch, needs, ("timestamp-query", "subgroup"))
    assert why == "" and asked == [BACKEND]
    assert device.args == ("the adapter", replace(ADAPTER, features=("timestamp-query", "subgroup")),
                           ("subgroup", "timestamp-query"))  # sorted, once each, only what the adapter has


def test_open_device_offers_a_command_line_kernel_every_optional_feature_the_adapter_has(tmp_path, monkeypatch):
    case = _case_and_problem(tmp_path)[0]
    checked = replace(case, kernel=replace(case.kernel, origin="check:k.wgsl"))
    device, _, _ = _open_with(monkeypatch, [case, checked], ("subgroup", "shader-f16", "timestamp-query"))
    assert device.args[2] == ("shader-f16", "subgroup")  # the optional shader features, in their order
    device, _, _ = _open_with(monkeypatch, [checked], ("timestamp-query",))
    assert device.args[2] == ()


def test_open_device_says_why_there_is_no_device(tmp_path, monkeypatch):
    case = _case_and_problem(tmp_path)[0]
    device, why, _ = _open_with(monkeypatch, [case], (), fails=True)
    assert device is None and why == "RuntimeError: no adapter matches 'Fake'"


def test_warm_up_builds_the_first_kernels_pipeline_on_the_ops_tiny_problem_and_never_raises(tmp_path):
    from q4gsw.case import warm_up

    case = _case_and_problem(tmp_path)[0]
    (tmp_path / "k.wgsl").write_text(KERNEL_TEXT)
    warmed: list[tuple[str, dict[str, Any], str, Bindings]] = []

    class Warming(FakeDevice):
        def warm_up(self, source: str, overrides: dict[str, Any], label: str, bindings: Bindings) -> None:
            warmed.append((source, dict(overrides), label, bindings))

    warm_up(Warming(), case, tmp_path)
    ((source, overrides, label, bindings),) = warmed
    assert (source, overrides, label) == (KERNEL_TEXT, {}, "fake_kernel")
    assert bindings.output_shape == (1, 8)  # linear_q4gsw's 1x8x8 warm-up problem
    assert next(b.data for b in bindings.inputs if b.index == 1).shape == (1, 8)

    class Broken(FakeDevice):
        def warm_up(self, *args: Any) -> None:
            raise RuntimeError("device lost")

    warm_up(Broken(), case, tmp_path)  # left for execute_case to meet again
    needy = replace(case, kernel=replace(case.kernel, requires_features=("shader-f16",)))
    warmed.clear()
    warm_up(Warming(), needy, tmp_path)
    assert warmed == []  # a kernel the adapter cannot run is not warmed


def test_execute_config_opens_its_own_device_and_passes_the_seed_repeats_and_warm_up_on(tmp_path, monkeypatch):
    from q4gsw import case as case_module

    case, _, _ = _case_and_problem(tmp_path)
    device = CheckingDevice()
    opened: list[list[Case]] = []
    loaded: list[tuple[Any, ...]] = []
    executed: list[tuple[Any, ...]] = []
    real_load = case_module.load_problem

    def open_device(cases: list[Case]) -> tuple[Any, str]:
        opened.append(cases)
        return device, ""

    def load_problem(config: Any, inputs: tuple[str, ...], fixture: Any, seed: Any) -> Problem:
        loaded.append((config.name, inputs, fixture, seed))
        return real_load(config, inputs, fixture, seed)

    def execute_case(case: Case, device: Any, problem: Problem, root: Path, repeats: int = 1,
                     warmup_s: float | None = None, batch: int = 1) -> str:
        executed.append((case.input, root, repeats, warmup_s))
        return case.id

    monkeypatch.setattr(case_module, "open_device", open_device)
    monkeypatch.setattr(case_module, "load_problem", load_problem)
    monkeypatch.setattr(case_module, "execute_case", execute_case)
    cases = [case, replace(case, input="normal"), replace(case, kernel=replace(case.kernel, name="other"))]
    ids = list(case_module.execute_config(cases, None, 7, tmp_path, repeats=3, warmup_s=0.5))
    assert ids == [c.id for c in cases] and opened == [cases]
    assert loaded == [("fake_gemv", ("ramp", "normal"), None, 7)]  # each input once, in order
    assert executed == [("ramp", tmp_path, 3, 0.5), ("normal", tmp_path, 3, 0.5), ("ramp", tmp_path, 3, 0.5)]


def test_warm_up_binds_a_staged_kernel_by_its_stage(tmp_path, monkeypatch):
    from q4gsw.case import warm_up

    case = _case_and_problem(tmp_path)[0]
    (tmp_path / "k.wgsl").write_text(KERNEL_TEXT)
    staged = replace(case, kernel=replace(case.kernel, stage="second"))
    asked: list[tuple[str, Any, Any]] = []
    stage_bindings = Bindings(output_index=0, output_shape=(2,), inputs=())

    def bindings_of(self: Any, stage: str, x: Any, constants: Any) -> Bindings:
        asked.append((stage, x.shape, constants.group_size))
        return stage_bindings

    monkeypatch.setattr(type(op_for("linear_q4gsw")), "stage_bindings", bindings_of)
    warmed: list[Any] = []

    class Warming(FakeDevice):
        def warm_up(self, source: str, overrides: dict[str, Any], label: str, bindings: Bindings) -> None:
            warmed.append((source, bindings))

    warm_up(Warming(), staged, tmp_path)
    assert asked == [("second", (1, 8), 8)] and warmed == [(KERNEL_TEXT, stage_bindings)]  # the tiny 1x8x8 problem


def test_open_device_reuses_a_device_opened_with_the_same_features(tmp_path, monkeypatch):
    from q4gsw.case import open_device
    from q4gsw.webgpu import adapter as adapter_module
    from q4gsw.webgpu import execute

    made: list[tuple[Any, ...]] = []

    class Opened:
        def __init__(self, adapter: Any, info: AdapterInfo, want_features: tuple[str, ...] = ()) -> None:
            made.append((adapter, info, want_features))

    info = replace(ADAPTER, features=("subgroup", "shader-f16"))
    monkeypatch.setattr(adapter_module, "select_adapter", lambda backend: ("the adapter", info))
    monkeypatch.setattr(execute, "Device", Opened)
    case = _case_and_problem(tmp_path)[0]
    subgroup = replace(case, kernel=replace(case.kernel, requires_features=("subgroup",)))
    opened: dict[tuple[str, ...], Any] = {}
    first, why = open_device([subgroup], opened)
    again, _ = open_device([subgroup], opened)
    other, _ = open_device([case], opened)
    assert why == "" and again is first and other is not first
    assert made == [("the adapter", info, ("subgroup",)), ("the adapter", info, ())]
    assert opened == {("subgroup",): first, (): other}
