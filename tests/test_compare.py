import numpy as np
import pytest

from q4gsw.compare import compare
from q4gsw.matrix import Tolerance

TOL = Tolerance(atol=1e-3, rtol=1e-2, justification="test")


def test_exact_output_passes_with_zero_headroom():
    g = np.arange(12, dtype=np.float64).reshape(3, 4)
    c = compare(g.astype(np.float32), g, TOL)
    assert c.passed and c.errors.headroom == 0 and c.errors.mismatches == 0 and c.errors.max_abs == 0


def test_bound_is_atol_plus_rtol_times_golden():
    g = np.full((2, 2), 10.0)
    y = g.copy()
    y[1, 0] += 0.1009  # bound = 1e-3 + 1e-2 * 10 = 0.101: inside
    assert compare(y, g, TOL).passed
    y[1, 0] = 10.0 + 0.1011  # just outside
    c = compare(y, g, TOL)
    assert not c.passed and c.errors.mismatches == 1 and c.errors.worst_index == (1, 0)
    assert c.errors.headroom == pytest.approx(0.1011 / 0.101, rel=1e-6)
    assert "worst (m, n) = (1, 0)" in c.message


def test_nonfinite_outputs_fail_with_first_index():
    g = np.zeros((2, 3))
    y = np.zeros((2, 3), dtype=np.float32)
    y[1, 2] = np.nan
    y[1, 1] = np.inf
    c = compare(y, g, TOL)
    assert not c.passed and c.errors.nonfinite == 2 and c.errors.first_nonfinite == (1, 1)
    assert "non-finite" in c.message


def test_reports_errors_and_nmse():
    g = np.array([[1.0, -2.0]])
    y = np.array([[1.0005, -2.0]], dtype=np.float64)
    c = compare(y, g, TOL)
    assert c.passed
    assert c.errors.max_abs == pytest.approx(5e-4)
    assert c.errors.max_rel == pytest.approx(5e-4)
    assert c.errors.nmse == pytest.approx(5e-4**2 / 5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        compare(np.zeros((1, 2)), np.zeros((2, 1)), TOL)
