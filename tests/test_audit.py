"""The fp32 error model on hand-computed cases, and the audit's flags."""

from __future__ import annotations

import math

import numpy as np
import pytest

from q4gsw import audit
from q4gsw.matrix import Config
from q4gsw.result import AdapterInfo, Errors, Result, Tolerance, write_results

U = 2.0**-24


def test_gamma_and_lambda():
    assert audit.gamma(1) == pytest.approx(U / (1 - U))
    assert audit.gamma(2049) == pytest.approx(2049 * U, rel=1e-3)
    assert audit.gamma(2**24) == math.inf
    # lambda grows with the number of outputs (union bound), like sqrt(2 ln(2 n E / delta)).
    assert audit.hm_lambda(2049, 1) == pytest.approx(math.sqrt(2 * math.log(2 * 2049 / 1e-3)))
    assert audit.hm_lambda(2049, 4096 * 2048) > audit.hm_lambda(2049, 2048)
    # The probabilistic gamma is ~ lambda sqrt(n) u: far below the deterministic n u for large n.
    assert audit.hm_gamma(2049, 7.0) == pytest.approx(7.0 * math.sqrt(2049) * U, rel=1e-3)


def test_error_model_by_hand():
    x = np.array([[1.0, 2.0]])
    w = np.array([[3.0, -4.0]])
    scales = np.array([[0.5]])  # one group of 2 for the single output column
    model = audit.error_model(x, w, scales, group_size=2)
    assert model.S[0, 0] == 11.0  # |1*3| + |2*-4|
    assert model.worst[0, 0] == pytest.approx(audit.gamma(3) * 11.0)
    # terms 3, -8; partial sums 3, -5: sum P^2 = 34, 2 sum t^2 = 146.
    assert model.sigma[0, 0] == pytest.approx(U / math.sqrt(3) * math.sqrt(34 + 146))
    assert model.step[0, 0] == 1.0  # max|x| in the group (2) * scale 0.5


def test_repeated_rows_are_computed_once_but_reported_for_every_row():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16))
    x = np.concatenate([x, x[:1], x])  # 7 rows, 3 distinct
    w = rng.standard_normal((5, 16))
    model = audit.error_model(x, w, np.ones((2, 5)), group_size=8)
    brute = np.abs(x) @ np.abs(w).T
    assert model.S.shape == (7, 5)
    np.testing.assert_allclose(model.S, brute)
    np.testing.assert_allclose(model.sigma[3], model.sigma[0])


def test_real_fp32_sequential_sums_stay_within_the_model():
    """An actual fp32 sequential dot product never exceeds the deterministic bound, and its largest
    error is of the order of the statistical estimate."""
    rng = np.random.default_rng(1)
    M, N, K = 4, 64, 1024
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = (rng.standard_normal((N, K)) * 0.03).astype(np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    terms = x[:, None, :] * w[None, :, :]  # fp32 products
    y32 = np.cumsum(terms, axis=2, dtype=np.float32)[:, :, -1]  # sequential fp32 accumulation
    err = np.abs(y32.astype(np.float64) - exact)
    model = audit.error_model(x, w)
    assert (err <= model.worst).all()
    assert (err <= model.hm_bound).all()
    assert err.max() <= 3 * model.est.max()
    assert err.max() >= model.est.max() / 30  # same order: the estimate is not vacuous


def _config(atol: float, rtol: float) -> Config:
    return Config(name="t", M=1, K=1024, N=64, group_size=32, tier="required", suite="test", inputs=("ramp",),
                  weights="linear_init", weight_seed=0, timeout_s=60, tolerance=Tolerance(atol, rtol, "test"))


def _toy_model() -> tuple[audit.ErrorModel, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 1024))
    q = rng.integers(-8, 8, size=(64, 1024))
    scales = np.full((32, 64), 0.004)
    w = q * 0.004
    return audit.error_model(x, w, scales, group_size=32), x @ w.T


def test_flags_loose_blind_tight_and_flaky():
    model, g = _toy_model()
    worst = float(model.worst.max())
    loose = audit.audit_case(_config(100 * worst, 0), "ramp", model, g, 100 * worst, 0, [])
    assert "LOOSE" in loose.flags
    blind = audit.audit_case(_config(1.0, 0), "ramp", model, g, 1.0, 0, [])
    assert "BLIND" in blind.flags  # one nibble step (|x| * 0.004 < 0.02) never exceeds atol 1
    est = float(model.est.max())
    tight = audit.audit_case(_config(est, 0), "ramp", model, g, est, 0, [])
    assert "TIGHT" in tight.flags and "LOOSE" not in tight.flags
    sound = audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, [])
    assert sound.flags == [] and sound.suggested_atol == pytest.approx(3 * est, rel=1e-6)
    flaky_measurement = [audit.Measured("swiftshader", "gemv", "x", "pass", 5 * est, 0.5, "r.json", 10 * est, 0)]
    flaky = audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, flaky_measurement)
    assert flaky.flags == ["FLAKY"]
    spread = [audit.Measured("a", "k", "x", "pass", 0.1 * est, 0.01, "r.json", 10 * est, 0),
              audit.Measured("b", "k", "x", "pass", 0.1 * est, 0.01, "r.json", 10 * est, 0),
              audit.Measured("c", "k", "x", "pass", 1.0 * est, 0.15, "r.json", 10 * est, 0)]
    assert audit.measured_spread(spread) == pytest.approx(10.0)
    # A run under another tolerance: its headroom is re-derived as max|err| / min T, here 5*est / 10*est.
    other = [audit.Measured("a", "k", "x", "pass", 5 * est, 0.01, "r.json", 1.0, 0)]
    assert audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, other).measured_headroom == 0.5
    assert "FLAKY" in audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, spread).flags
    impossible = [audit.Measured("a", "k", "x", "fail", 2 * worst, 0.5, "r.json")]
    assert "MODEL?" in audit.audit_case(_config(1.0, 0), "ramp", model, g, 1.0, 0, impossible).flags


def _errors(max_abs: float, headroom: float) -> Errors:
    return Errors(max_abs=max_abs, max_rel=0.0, worst_index=(0, 0), mismatches=0, elements=64, nmse=0.0,
                  headroom=headroom)


def test_load_measurements_reads_typed_results(tmp_path):
    results = [
        Result(config="t", backend="swiftshader", status="pass", message="", kernel="gemv", input="ramp",
               webgpu="dawn", errors=_errors(1e-6, 0.1), tolerance=Tolerance(1e-5, 1e-4),
               adapter=AdapterInfo(name="SwiftShader Device (Subzero)", webgpu="dawn")),
        # Under a kernel's own tolerance; no adapter recorded.
        Result(config="t", backend="lavapipe", status="fail", message="", kernel="tiled", input="ramp",
               errors=_errors(2e-4, 2.0), tolerance=Tolerance(1e-4, 0.0, source="kernel:tiled")),
        # Nothing measured: a crash before the comparison, a skip.
        Result(config="t", backend="swiftshader", status="fail", message="crashed", kernel="gemv", input="normal"),
        Result(config="t", backend="swiftshader", status="skip", message="heavy", input="ramp"),
    ]
    write_results(tmp_path / "run" / "results.json", results, {"backend": "mixed"})
    found = audit.load_measurements([tmp_path])
    assert list(found) == [("t", "ramp")]
    first, second = found[("t", "ramp")]
    assert (first.backend, first.kernel, first.adapter, first.status) == (
        "swiftshader", "gemv", "SwiftShader Device (Subzero)", "pass")
    assert (first.max_abs, first.headroom, first.atol, first.rtol, first.tolerance_source) == (
        1e-6, 0.1, 1e-5, 1e-4, "config")
    assert (second.adapter, second.max_abs, second.atol, second.tolerance_source) == ("", 2e-4, 1e-4, "kernel:tiled")
