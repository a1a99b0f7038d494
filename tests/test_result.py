"""The typed Result (q4gsw.report.result): results.json round trip through from_dict, and the one exit-code rule."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from q4gsw.matrix.values import AdapterInfo, Errors, Tolerance
from q4gsw.report import verdict
from q4gsw.report.result import (
    RESULT_SCHEMA_VERSION,
    Provenance,
    Result,
    Shape,
    Timings,
    counts,
    read_results,
    summary_line,
    write_results,
)

FULL = Result(
    config="q_proj", backend="swiftshader", status="fail", message="1/2048 elements out of tolerance",
    case_id="q_proj/gemv/ramp@swiftshader", webgpu="wgpu-native", tier="required", suite="llama", kernel="gemv",
    input="ramp", role="reference", routed="gemv",
    shape=Shape({"M": 1, "K": 2048, "N": 2048, "group_size": 32}, "1x2048x2048 gs=32"),
    tolerance=Tolerance(1e-5, 1e-4, "K=2048: fp32 error below 2e-6", "kernel:gemv"),
    upstream="fail (3 elements beyond atol 0.001 or rtol 0.01)",
    errors=Errors(max_abs=2.5e-5, max_rel=0.5, worst_index=(0, 17), mismatches=1, elements=2048, nmse=1e-12,
                  headroom=1.8, nonfinite=2, first_nonfinite=(0, 3), guard_violations=1,
                  histogram={"log10_edges": [-14.0, -13.75], "counts": [3], "zero": 1, "below": 0, "above": 0,
                             "nonfinite": 2}),
    adapter=AdapterInfo(name="SwiftShader Device (Subzero)", vendor="Google", device_type="CPU", api="Vulkan",
                          driver="5.0.0", webgpu="wgpu-native", features=("subgroup", "timestamp-query"),
                          limits={"max-compute-invocations-per-workgroup": 256}),
    timings=Timings(export_s=1.5, unpack_s=0.1, golden_s=0.2, gpu_s=0.003, gpu_wall_s=0.5, gpu_timing="gpu",
                    compare_s=0.01, total_s=4.0, gflops=1.4, fixture_export_s=30.0, fixture_golden_s=0.3),
    workgroups=(4, 1, 1), peak_rss_bytes=123456789,
    provenance=Provenance(fixture="abc123", weights="linear_init", weight_seed=0, input="ramp",
                          kernel_source="q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl",
                          source_notes=("added `enable subgroups;` (Tint requires it)",),
                          versions={"q4gsw": "0.1.0", "wgpu": "0.32.0"}),
    reproduce="nox -s accuracy-swiftshader -- --config q_proj", log="driver said something")


def _result(status: str, config: str = "c") -> Result:
    return Result(config=config, backend="swiftshader", status=status, message=status)


def test_from_dict_round_trips_every_field_and_type():
    back = Result.from_dict(json.loads(json.dumps(FULL.as_dict())))
    assert back == FULL
    assert isinstance(back.errors, Errors) and back.errors.worst_index == (0, 17)
    assert back.errors.first_nonfinite == (0, 3)
    assert isinstance(back.adapter, AdapterInfo) and back.adapter.features == ("subgroup", "timestamp-query")
    assert isinstance(back.timings, Timings) and isinstance(back.shape, Shape)
    assert back.provenance.source_notes == FULL.provenance.source_notes and back.workgroups == (4, 1, 1)
    assert back.max_abs == 2.5e-5 and back.headroom == 1.8


def test_a_result_that_never_ran_round_trips_with_its_defaults():
    skipped = Result(config="lm_head", backend="swiftshader", status="skip", message="heavy: run `nox -s heavy`")
    back = Result.from_dict(json.loads(json.dumps(skipped.as_dict())))
    assert back == skipped
    assert back.errors is None and back.adapter is None and back.tolerance is None
    assert back.max_abs is None and back.headroom is None and back.shape.text == ""
    assert FULL.shape.text == "1x2048x2048 gs=32" and FULL.shape.dims["K"] == 2048


def test_unknown_keys_written_by_a_newer_q4gsw_are_ignored():
    data = FULL.as_dict()
    data["from_the_future"] = 1
    data["errors"]["new_measure"] = 2.0
    data["timings"]["new_stage_s"] = 3.0
    assert Result.from_dict(data) == FULL


def test_results_json_round_trip(tmp_path: Path):
    path = tmp_path / "out" / "results.json"
    results = [FULL, _result("pass", "b"), _result("skip", "h")]
    write_results(path, results, {"backend": "swiftshader", "interrupted": False})
    payload = json.loads(path.read_text())
    assert payload["schema_version"] == RESULT_SCHEMA_VERSION and payload["backend"] == "swiftshader"
    assert payload["results"][0]["errors"]["worst_index"] == [0, 17]  # tuples are JSON lists
    back, meta = read_results(path)
    assert back == results
    assert meta == {"schema_version": RESULT_SCHEMA_VERSION, "backend": "swiftshader", "interrupted": False}
    assert not list(path.parent.glob("*.tmp"))  # written atomically


# ------------------------------------------------------------------------------------------------
# Exit code: decided in one place
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("statuses, expected", [
    (["pass"], verdict.OK),
    (["pass", "skip", "unsupported"], verdict.OK),
    (["pass", "pass", "fail"], verdict.FAILED),  # any fail
    (["fail"], verdict.FAILED),
    ([], verdict.FAILED),  # nothing checked is never a success
    (["skip"], verdict.FAILED),
    (["skip", "unsupported"], verdict.FAILED),
    (["unsupported"], verdict.FAILED),
], ids=["pass", "pass-with-skips", "one-fail", "fail", "nothing", "only-skips", "skips-unsupported",
        "only-unsupported"])
def test_exit_code(statuses: list[str], expected: int):
    assert verdict.exit_code([_result(s) for s in statuses]) == expected


@pytest.mark.parametrize("statuses", [["pass"], ["fail"], [], ["skip"]])
def test_an_interrupted_run_exits_130_whatever_passed(statuses: list[str]):
    assert verdict.exit_code([_result(s) for s in statuses], interrupted=True) == verdict.INTERRUPTED == 130


def test_exit_codes_are_the_documented_ones():
    assert (verdict.OK, verdict.FAILED, verdict.INTERRUPTED) == (0, 1, 130)


def test_counts_and_summary_line():
    results = [_result(s) for s in ("pass", "pass", "fail", "skip")]
    assert counts(results) == {"pass": 2, "fail": 1, "skip": 1, "unsupported": 0}
    assert summary_line(results) == "2 passed, 1 failed, 1 skipped"
    assert summary_line([*results, replace(results[0], status="unsupported")]) == \
        "2 passed, 1 failed, 1 skipped, 1 unsupported"
