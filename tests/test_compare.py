"""compare() (q4gsw.compare): the bound atol + rtol*|g|, non-finite outputs, the errors and the message; and its
properties (hypothesis, issue #8): y == g passes with headroom 0; one element pushed past atol + rtol*|g| fails
with mismatches == 1 at that element; NaN/Inf anywhere fails with the right count and first index; headroom <= 1
iff passed."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from q4gsw.compare import compare
from q4gsw.matrix.load import Tolerance

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


# ------------------------------------------------------------------------------------------------
# Properties of compare() (hypothesis, issue #8)
# ------------------------------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 6), st.integers(1, 9))


f32_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)


tolerances = st.builds(lambda a, r: Tolerance(atol=a, rtol=r, justification="property test"),
                       st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.0, max_value=1.0))


def golden_arrays(shape: tuple[int, int]) -> st.SearchStrategy[np.ndarray]:
    """fp64 goldens that are exactly representable in fp32, so a kernel can hit them exactly."""
    return hnp.arrays(np.float32, shape, elements=f32_values).map(lambda a: a.astype(np.float64))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), shape=shapes, tolerance=tolerances)
def test_any_exact_output_passes_with_zero_headroom(data: st.DataObject, shape: tuple[int, int],
                                                tolerance: Tolerance) -> None:
    g = data.draw(golden_arrays(shape))
    result = compare(g.astype(np.float32), g, tolerance)
    assert result.passed and result.errors.mismatches == 0 and result.errors.nonfinite == 0
    assert result.errors.headroom == 0.0 and result.errors.max_abs == 0.0
    assert result.errors.elements == g.size


@settings(max_examples=150, deadline=None)
@given(data=st.data(), shape=shapes, tolerance=tolerances, factor=st.floats(1.5, 1e3), sign=st.sampled_from([-1, 1]))
def test_one_element_past_the_bound_fails_exactly_there(data: st.DataObject, shape: tuple[int, int],
                                                        tolerance: Tolerance, factor: float, sign: int) -> None:
    g = data.draw(golden_arrays(shape))
    m = data.draw(st.integers(0, shape[0] - 1))
    n = data.draw(st.integers(0, shape[1] - 1))
    bound = tolerance.atol + tolerance.rtol * abs(g[m, n])
    y = g.astype(np.float32)
    y[m, n] = np.float32(g[m, n] + sign * max(factor * bound, 1e-30))
    assume(np.isfinite(y[m, n]) and abs(float(y[m, n]) - g[m, n]) > bound)
    result = compare(y, g, tolerance)
    assert not result.passed
    assert result.errors.mismatches == 1
    assert result.errors.worst_index == (m, n)
    assert result.errors.headroom > 1.0
    assert f"worst (m, n) = ({m}, {n})" in result.message
    assert result.message.startswith(f"1/{g.size} elements out of tolerance")


@settings(max_examples=150, deadline=None)
@given(data=st.data(), shape=shapes, tolerance=tolerances)
def test_non_finite_outputs_fail_with_count_and_first_index(data: st.DataObject, shape: tuple[int, int],
                                                             tolerance: Tolerance) -> None:
    g = data.draw(golden_arrays(shape))
    y = g.astype(np.float32)
    flat = data.draw(st.lists(st.integers(0, g.size - 1), min_size=1, max_size=g.size, unique=True))
    bad_values = data.draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=len(flat),
                                    max_size=len(flat)))
    y.reshape(-1)[flat] = bad_values
    result = compare(y, g, tolerance)
    first = min(flat)
    assert not result.passed
    assert result.errors.nonfinite == len(flat)
    assert result.errors.first_nonfinite == (first // shape[1], first % shape[1])
    assert result.message == f"{len(flat)} non-finite outputs, first at (m, n) = {result.errors.first_nonfinite}"


@settings(max_examples=200, deadline=None)
@given(data=st.data(), shape=shapes, tolerance=tolerances)
def test_headroom_at_most_one_iff_passed(data: st.DataObject, shape: tuple[int, int], tolerance: Tolerance) -> None:
    g = data.draw(golden_arrays(shape))
    # Outputs near the golden (to hit the boundary often) or anywhere.
    noise = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-2.0, 2.0)))
    near = (g + noise * (tolerance.atol + tolerance.rtol * np.abs(g))).astype(np.float32)
    anywhere = data.draw(hnp.arrays(np.float32, shape, elements=f32_values))
    y = data.draw(st.sampled_from([near, anywhere]))
    assume(np.isfinite(y).all())
    result = compare(y, g, tolerance)
    assert result.passed == (result.errors.headroom <= 1.0), (result.errors.headroom, result.message)
    assert result.passed == (result.errors.mismatches == 0)


def test_the_worst_element_is_the_one_furthest_past_its_bound_not_the_largest_error():
    g = np.array([[100.0, 0.0]])
    y = np.array([[100.0 + 5e-3, 2e-3]])  # |err| 5e-3 inside its bound 1.001; |err| 2e-3 past its bound 1e-3
    c = compare(y, g, TOL)
    assert not c.passed and c.errors.mismatches == 1 and c.errors.worst_index == (0, 1)
    assert "worst (m, n) = (0, 1)" in c.message and c.errors.max_abs == pytest.approx(5e-3)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_golden_fails_whatever_the_output(bad):
    """An infinite golden makes every bound infinite: without this gate any output would pass."""
    g = np.ones((2, 3))
    g[1, 2] = bad
    c = compare(np.ones((2, 3), dtype=np.float32), g, TOL)
    assert not c.passed
    assert c.message.startswith("the golden holds 1 non-finite values, first at (m, n) = (1, 2)")


def test_a_clean_comparison_says_its_error_and_headroom_and_has_no_first_non_finite():
    g = np.array([[4.0, -2.0]])
    y = np.array([[4.001, -2.0]])  # |err| 1e-3 against a bound of 1e-3 + 1e-2 * 4 = 0.041
    c = compare(y, g, TOL)
    assert c.passed and c.errors.first_nonfinite is None and c.errors.nonfinite == 0
    assert c.message == "max |err| 0.001, headroom 0.024"
    assert c.errors.max_rel == pytest.approx(1e-3 / 4)  # |err| / |g|, not |err| * |g|


def test_a_non_finite_output_has_infinite_headroom():
    g = np.ones((1, 3))
    y = np.ones((1, 3), dtype=np.float32)
    y[0, 1] = np.nan
    c = compare(y, g, TOL)
    assert c.errors.headroom == np.inf and c.errors.max_abs == 0


def test_nmse_is_relative_to_the_golden_energy_and_the_squared_error_for_a_zero_golden():
    g = np.array([[0.5, 0.0]])  # energy 0.25, under 1
    c = compare(np.array([[0.5 + 1e-3, 0.0]]), g, TOL)
    assert c.errors.nmse == pytest.approx(1e-6 / 0.25)
    zero = compare(np.array([[3e-4, -4e-4]]), np.zeros((1, 2)), TOL)
    assert zero.errors.nmse == pytest.approx(9e-8 + 16e-8)


def test_a_non_finite_golden_says_what_to_do():
    g = np.ones((1, 2))
    g[0, 0] = np.inf
    assert compare(np.ones((1, 2)), g, TOL).message.endswith("nothing can be compared with it; re-export the fixture")


@pytest.mark.parametrize("shape", [(3, 4, 6), (5,), (2, 1, 3, 4)])
def test_an_output_of_any_rank_is_compared_as_rows_of_its_last_dimension(shape):
    """Ops with outputs of rank 1 or 3+ (rope's [seq, heads, head_dim]): (m, n) index the rows of the leading dims
    flattened (an IndexError from the worst element's message before)."""
    g = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    y = g.astype(np.float32)
    y.reshape(-1)[-2] += 1.0  # the second-to-last element: last row, column shape[-1] - 2
    result = compare(y, g, Tolerance(atol=1e-3, rtol=0.0))
    rows = int(np.prod(shape[:-1]))
    assert not result.passed and result.errors.worst_index == (rows - 1, shape[-1] - 2)
    assert f"worst (m, n) = ({rows - 1}, {shape[-1] - 2})" in result.message
    y.reshape(-1)[-2] = np.nan
    assert compare(y, g, Tolerance(atol=1e-3, rtol=0.0)).errors.first_nonfinite == (rows - 1, shape[-1] - 2)
