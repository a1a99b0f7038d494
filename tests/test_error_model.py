"""The fp32 error model (q4gsw.ops.error_model): the bounds by hand and against real fp32 sums."""

from __future__ import annotations

import math

import numpy as np
import pytest

from q4gsw.ops import error_model

U = 2.0**-24


def test_gamma_and_lambda():
    assert error_model.gamma(1) == pytest.approx(U / (1 - U))
    assert error_model.gamma(2049) == pytest.approx(2049 * U, rel=1e-3)
    assert error_model.gamma(2**24) == math.inf
    # lambda grows with the number of outputs (union bound), like sqrt(2 ln(2 n E / delta)).
    assert error_model.hm_lambda(2049, 1) == pytest.approx(math.sqrt(2 * math.log(2 * 2049 / 1e-3)))
    assert error_model.hm_lambda(2049, 4096 * 2048) > error_model.hm_lambda(2049, 2048)
    # The probabilistic gamma is ~ lambda sqrt(n) u: far below the deterministic n u for large n.
    assert error_model.hm_gamma(2049, 7.0) == pytest.approx(7.0 * math.sqrt(2049) * U, rel=1e-3)


def test_error_model_by_hand():
    x = np.array([[1.0, 2.0]])
    w = np.array([[3.0, -4.0]])
    scales = np.array([[0.5]])  # one group of 2 for the single output column
    model = error_model.error_model(x, w, scales, group_size=2)
    assert model.S[0, 0] == 11.0  # |1*3| + |2*-4|
    assert model.worst[0, 0] == pytest.approx(error_model.gamma(3) * 11.0)
    # terms 3, -8; partial sums 3, -5: sum P^2 = 34, 2 sum t^2 = 146.
    assert model.sigma[0, 0] == pytest.approx(U / math.sqrt(3) * math.sqrt(34 + 146))
    assert model.step[0, 0] == 1.0  # max|x| in the group (2) * scale 0.5


def test_repeated_rows_are_computed_once_but_reported_for_every_row():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16))
    x = np.concatenate([x, x[:1], x])  # 7 rows, 3 distinct
    w = rng.standard_normal((5, 16))
    model = error_model.error_model(x, w, np.ones((2, 5)), group_size=8)
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
    model = error_model.error_model(x, w)
    assert (err <= model.worst).all()
    assert (err <= model.hm_bound).all()
    assert err.max() <= 3 * model.est.max()
    assert err.max() >= model.est.max() / 30  # same order: the estimate is not vacuous
