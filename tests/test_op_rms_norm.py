"""Op rms_norm offline: the fp64 golden and the eps the kernel receives, the error model's terms, the inputs (outlier
channels, upstream's patterns), shape rules, the bindings in ExecuTorch's layout, the fixture files, the matrix's
configs and kernel set, and every mutant's edits. Expected values are worked out by hand in each test."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import op_for
from q4gsw.ops.rms_norm import RmsNorm
from q4gsw.ops.rms_norm.golden import error_model, golden, relative_terms
from q4gsw.ops.rms_norm.inputs import LLAMA_EPS, UPSTREAM_EPS, WEIGHT_EPS, make_input, weight_pattern
from q4gsw.ops.rms_norm.layout import NormWeights
from q4gsw.ops.rms_norm.mutants import CATALOGUE, REFERENCE

REPO = Path(__file__).resolve().parent.parent
U = 2.0**-24
OP = RmsNorm()
TOLERANCE = Tolerance(atol=1.18e-38, rtol=1e-5, justification="test")


def config(rows: int, width: int, inputs: tuple[str, ...] = ("normal",), weights: str = "llama") -> Config:
    return Config(name="rms_test", dims={"rows": rows, "width": width}, tier="required", suite="rms_norm-test",
                  inputs=inputs, weights=weights, weight_seed=0, timeout_s=60.0, tolerance=TOLERANCE, op="rms_norm")


def test_the_op_is_found_by_its_folder_name():
    assert isinstance(op_for("rms_norm"), RmsNorm)
    assert OP.operator == "et_vk.rms_norm.default"


def test_golden_by_hand():
    # x = (3, 4): mean square 12.5; eps 0.25 -> 1 / sqrt(12.75); weight (1, -2)
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    y = golden(x, NormWeights(weight=np.array([1.0, -2.0], np.float32), eps=0.25))
    r = 1 / math.sqrt(12.75)
    assert y[0, 0] == pytest.approx(3 * r, rel=1e-15) and y[0, 1] == pytest.approx(-8 * r, rel=1e-15)
    assert np.all(y[1] == 0.0)  # an all-zero row: 0 * 1/sqrt(eps) * w


def test_golden_adds_the_fp32_eps_the_kernel_receives():
    # a row of (1e-3, 0): mean square 5e-7 beside eps = 1e-5, where eps's fp32 rounding moves y by ~1e-9
    x = np.array([[1e-3, 0.0]], dtype=np.float32)
    w = NormWeights(weight=np.ones(2, np.float32), eps=1e-5)
    m = float(np.float32(1e-3)) ** 2 / 2
    with_fp32_eps = float(np.float32(1e-3)) / math.sqrt(m + float(np.float32(1e-5)))
    with_double_eps = float(np.float32(1e-3)) / math.sqrt(m + 1e-5)
    assert abs(with_fp32_eps / with_double_eps - 1) > 1e-10
    assert golden(x, w)[0, 0] == pytest.approx(with_fp32_eps, rel=1e-15)


def test_golden_is_chunked_without_changing_rows():
    x = make_input("normal", 2050, 3, 0)
    w = NormWeights(weight=np.array([1.0, 2.0, 3.0], np.float32), eps=1e-5)
    y = golden(x, w)
    row = x[2049].astype(np.float64)
    assert np.allclose(y[2049], row / np.sqrt((row * row).mean() + float(np.float32(1e-5))) * [1, 2, 3], rtol=1e-14)


def test_error_model_terms_by_hand():
    # a row of four ones, eps 0: share m/d = 1; squares t = 1, running sums 1, 2, 3, 4
    x = np.ones((1, 4), np.float32)
    terms = relative_terms(x, 0.0)
    fixed = 2.5 * U + 0.5 * U + 4 * U + 2 * U / (1 - 2 * U)
    assert terms["worst"][0] == pytest.approx(0.5 * 4 * U / (1 - 4 * U) + fixed, rel=1e-12)
    assert terms["sigma"][0] == pytest.approx(0.5 * U / math.sqrt(3) * math.sqrt(30 + 4) / 4, rel=1e-12)
    assert terms["step"][0] == pytest.approx(0.5 / 4)
    # eps three times the mean square: every share-weighted term is a quarter
    quarter = relative_terms(x, 3.0)
    assert quarter["step"][0] == pytest.approx(0.5 / 4 / 4)


def test_error_model_in_the_audits_terms():
    from q4gsw.ops.error_model import gamma

    x = make_input("outliers", 8, 64, 0)
    w = NormWeights(weight=weight_pattern("llama", 64, 0), eps=LLAMA_EPS)
    model = error_model(x, w)
    g = np.abs(golden(x, w))
    terms = relative_terms(x, LLAMA_EPS)
    assert model.K == 64 and model.S.shape == g.shape
    assert np.allclose(model.worst, g * terms["worst"][:, None], rtol=1e-12)
    est_rel = math.sqrt(2 * math.log(8)) * terms["sigma"] + terms["fixed"]
    assert np.allclose(model.est, g * est_rel[:, None], rtol=1e-12)
    m = (x.astype(np.float64) ** 2).mean(axis=1)
    share = m / (m + float(np.float32(LLAMA_EPS)))
    assert np.allclose(model.step, g * (0.5 * share / 64)[:, None], rtol=1e-12)
    assert np.all(model.worst <= g * (0.5 * gamma(64) + 10 * U) + 1e-300)


def test_outliers_are_fixed_channels_at_100_to_1000_times_the_rows_scale():
    x = make_input("outliers", 8, 512, 3)
    big = np.abs(x) > 1.5 * np.array([0.02, 1.0] * 4)[:, None] * 50
    carriers = [0, 1, 4, 5]
    assert [r for r in range(8) if big[r].any()] == carriers
    channels = {tuple(np.flatnonzero(big[r])) for r in carriers}
    assert len(channels) == 1 and len(next(iter(channels))) == 4  # the same 4 channels in every carrier row
    for r in carriers:
        scale = 0.02 if r % 2 == 0 else 1.0
        ratio = np.abs(x[r, big[r]]) / scale
        assert np.all((ratio >= 100) & (ratio <= 1000))
        assert np.std(x[r, ~big[r]]) == pytest.approx(scale, rel=0.15)


def test_upstreams_patterns_by_hand():
    assert np.array_equal(make_input("upstream_ramp", 1, 3, 0), [[-1.0, 0.0, 1.0]])
    rows = make_input("distinct_rows", 3, 3, 0)
    assert np.allclose(rows, [[-0.01, 0.0, 0.01], [-0.1, 0.0, 0.1], [-1.0, 0.0, 1.0]], rtol=1e-6)
    mixed = make_input("mixed_sign", 4, 2, 0)
    assert np.allclose(mixed, [[-0.1, -1.0], [1e-4, 1e-4], [0.1, -1.0], [0.1, 1.0]], rtol=1e-6)
    assert np.all(make_input("constant", 2, 3, 0) == np.float32(0.7))
    assert np.array_equal(weight_pattern("zeros_neg", 5, 0), np.array([0.0, -0.5, 0.0, 0.5, 1.0], np.float32))
    assert np.array_equal(weight_pattern("linspace", 3, 0), np.array([0.5, 1.0, 1.5], np.float32))
    assert WEIGHT_EPS == {"llama": 1e-5, "linspace": UPSTREAM_EPS, "zeros_neg": UPSTREAM_EPS,
                          "upstream_width_1": UPSTREAM_EPS}


def test_llama_weight_is_not_all_ones():
    w = weight_pattern("llama", 2048, 0)
    assert w.dtype == np.float32 and np.std(w) == pytest.approx(0.5, rel=0.1) and (w < 0).any()


@pytest.mark.parametrize("rows, width, inputs, key", [
    (65536, 4, ("normal",), "rows"), (3, 128, ("mixed_sign",), "inputs"), (4, 5, ("mixed_sign",), "inputs"),
    (9, 16, ("distinct_rows",), "inputs")])
def test_shape_problems_name_the_key(rows, width, inputs, key):
    problems = OP.shape_problems(config(rows, width, inputs))
    assert [p.key for p in problems] == [key]


def test_a_fine_shape_has_no_problem():
    assert OP.shape_problems(config(65535, 2048, ("normal", "outliers"))) == []
    assert OP.shape_problems(config(4, 128, ("mixed_sign",))) == []


def test_bindings_are_executorchs_layout():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    w = NormWeights(weight=np.array([1, 2, 3], np.float32), eps=1e-5)
    bindings = OP.bindings(x, w)
    assert bindings.output_index == 0 and bindings.output_shape == (2, 3)
    assert [b.index for b in bindings.inputs] == [1, 2, 3]
    assert bindings.inputs[2].kind == "uniform"
    # float32(1e-5) = 0x3727C5AC
    assert bindings.inputs[2].data.tolist() == [2, 3, 0x3727C5AC, 0]
    with pytest.raises(ValueError, match="width 3 but the norm weight has 4"):
        OP.bindings(x, NormWeights(weight=np.ones(4, np.float32), eps=1e-5))


def test_constants_round_trip_through_the_fixture_files():
    w = NormWeights(weight=np.array([0.5, -1.25], np.float32), eps=1e-6)
    files = OP.constants_to_files(w)
    assert set(files) == set(OP.constant_files)
    back = OP.constants_from_files(files, config(1, 2))
    assert np.array_equal(back.weight, w.weight) and back.eps == 1e-6


def test_cpu_reference_is_within_the_error_model():
    x = make_input("outliers", 6, 300, 1)
    w = NormWeights(weight=weight_pattern("llama", 300, 0), eps=LLAMA_EPS)
    g = golden(x, w)
    worst = np.abs(g) * relative_terms(x, LLAMA_EPS)["worst"][:, None]
    assert np.all(np.abs(OP.cpu_reference(x, w) - g) <= worst + 1e-38)


def test_every_config_is_justified_and_routes_as_the_host_does():
    matrix = load_matrix(REPO / "matrix.toml")
    configs = [c for c in matrix.configs if c.op == "rms_norm"]
    suites = {c.suite for c in configs}
    assert suites == {"rms_norm-llama", "rms_norm-edges"}
    assert {c.dims["rows"] for c in configs if c.suite == "rms_norm-llama"} >= {1, 128, 512, 2048, 4096, 8192}
    assert all(any("outliers" in c.inputs for c in configs if c.dims["rows"] == r) for r in (1, 128, 512))
    assert all("Error model" in c.tolerance.justification for c in configs)
    assert any(c.dims["width"] % 4 for c in configs)  # the scalar variant is routed somewhere
    kernel_set = next(k for k in matrix.kernel_sets.values() if k.op == "rms_norm")
    assert list(kernel_set.route) == ["rms_norm_vec4", "rms_norm"]


@pytest.mark.parametrize("mutant", CATALOGUE, ids=lambda m: m.name)
def test_every_mutant_edits_the_reference_once(mutant):
    reference = REFERENCE.read_text()
    assert mutant.source(reference) != reference


def _routed(kernel_set, dims: dict[str, int], limits: dict[str, int]) -> str:
    from q4gsw.matrix.expressions import environment, evaluate

    env = environment(dims, limits)
    kernels = {k.name: k for k in kernel_set.kernels}
    return next((name for name in kernel_set.route if evaluate(kernels[name].when, env)), "unsupported")


def test_the_kernel_set_routes_as_rmsnorm_cpp():
    """RmsNorm.cpp: vec4 iff width % 4 == 0; one workgroup per row, refused above the adapter's per-dimension
    limit; wg_size 64 wherever the adapter has 64 invocations (every WebGPU adapter: the spec's minimum is 256)."""
    from q4gsw.matrix.expressions import evaluate

    matrix = load_matrix(REPO / "matrix.toml")
    kernel_set = next(k for k in matrix.kernel_sets.values() if k.op == "rms_norm")
    limits = {"max-compute-workgroups-per-dimension": 65535, "max-compute-invocations-per-workgroup": 256}
    for c in (c for c in matrix.configs if c.op == "rms_norm"):
        expected = "rms_norm_vec4" if c.dims["width"] % 4 == 0 else "rms_norm"
        assert _routed(kernel_set, dict(c.dims), limits) == expected, c.name
    assert _routed(kernel_set, {"rows": 4, "width": 130}, limits) == "rms_norm"
    assert _routed(kernel_set, {"rows": 65536, "width": 2048}, limits) == "unsupported"
    for kernel in kernel_set.kernels:
        assert [evaluate(d, {"rows": 7, "width": 8}) for d in kernel.dispatch] == [7]  # 1-D: one workgroup a row
        assert evaluate(kernel.overrides["wg_size"], {"max_invocations_per_workgroup": 256}) == 64


def test_error_model_terms_by_hand_for_rows_of_unequal_squares():
    # row [1, 2], eps 2.5: t = 1, 4; s = 5, m = 2.5, share m/d = 1/2; running sums 1, 5: sigma_s = u/sqrt3 sqrt(26 + 17)
    # row [3, 0]: t = 9, 0; running sums 9, 9: sigma_s = u/sqrt3 sqrt(162 + 81) = 9u; m = 4.5, share 4.5/7
    # row [0, 0]: s = 0, no sum error; share 0
    x = np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]], np.float32)
    terms = relative_terms(x, 2.5)
    share = np.array([0.5, 4.5 / 7, 0.0])
    fixed = 2.5 * U * share + 0.5 * U + 4 * U + 2 * U / (1 - 2 * U)
    assert np.allclose(terms["fixed"], fixed, rtol=1e-12)
    assert np.allclose(terms["worst"], 0.5 * 2 * U / (1 - 2 * U) * share + fixed, rtol=1e-12)
    sigma_s = np.array([U / math.sqrt(3) * math.sqrt(43), 9 * U, 0.0])
    assert np.allclose(terms["sigma"], 0.5 * np.array([sigma_s[0] / 5, sigma_s[1] / 9, 0.0]) * share, rtol=1e-12,
                       atol=0)
    assert np.allclose(terms["step"], 0.5 * share / 2, rtol=1e-12)


def test_golden_reports_its_progress_per_chunk_of_rows():
    x = make_input("normal", 2050, 3, 0)
    said: list[tuple[int, int]] = []
    golden(x, NormWeights(weight=np.ones(3, np.float32), eps=1e-5), progress=lambda done, total: said.append(
        (done, total)))
    assert said == [(1024, 2050), (2048, 2050), (2050, 2050)]


def test_a_shape_over_the_largest_binding_is_refused_by_its_bytes():
    # 4 * 65535 * 8193 = 2 147 713 020 bytes, just over 2^31 = 2 147 483 648; 8192 wide fits (2 147 352 576)
    problems = OP.shape_problems(config(65535, 8193))
    assert [p.key for p in problems] == ["rows"] and "2.0 GiB binding" in problems[0].problem
    assert OP.shape_problems(config(65535, 8192)) == []


def test_cross_check_refuses_a_delegate_weight_or_eps_that_is_not_the_modules():
    from q4gsw.export.pte import DelegateLayoutError
    from q4gsw.ops.rms_norm.recipe import cross_check

    own = NormWeights(weight=np.array([1.0, -0.5, 2.0, 0.25], np.float32), eps=1e-5)
    cross_check(NormWeights(weight=own.weight.copy(), eps=1e-5), own, config(1, 4))  # the same: accepted
    one_ulp = own.weight.copy()
    one_ulp[2] = np.nextafter(one_ulp[2], np.float32(3.0))
    for delegate, words in ((NormWeights(weight=one_ulp, eps=1e-5), "differs from the module's weight"),
                            (NormWeights(weight=own.weight.copy(), eps=1e-6), "eps 1e-06 is not the module's 1e-05"),
                            (NormWeights(weight=np.ones(5, np.float32), eps=1e-5),
                             "has 5 elements; config has width 4")):
        with pytest.raises(DelegateLayoutError, match=words):
            cross_check(delegate, own, config(1, 4))


def test_synthetic_constants_carry_the_eps_of_the_module_the_weights_name():
    upstream = OP.synthetic_constants(config(2, 8, weights="linspace"), 0)
    assert upstream.eps == 1e-6 and np.array_equal(upstream.weight, np.linspace(0.5, 1.5, 8, dtype=np.float32))
    llama = OP.synthetic_constants(config(2, 8), 3)
    assert llama.eps == 1e-5 and np.array_equal(llama.weight, weight_pattern("llama", 8, 3))
