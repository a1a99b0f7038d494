"""The fp64 golden of op linear_q4gsw (q4gsw.ops.linear_q4gsw.golden): the dense reference, chunking and
repeated rows computed once."""

import numpy as np

from q4gsw.ops.inputs import make_input
from q4gsw.ops.linear_q4gsw.golden import distinct_rows, golden
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4


def _random_linear(rng: np.random.Generator, N: int, K: int, group: int) -> PackedLinear:
    q = rng.integers(-8, 8, (N, K))
    scales = rng.random((K // group, N)).astype(np.float32)
    return PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group)


def test_golden_matches_dense_fp64_reference():
    rng = np.random.default_rng(1)
    packed = _random_linear(rng, 24, 64, 16)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    dense = packed.dequantized_rows(0, 24)
    assert np.allclose(golden(x, packed), x.astype(np.float64) @ dense.T, rtol=0, atol=1e-12)


def test_golden_chunking_gives_identical_results_and_reports_progress():
    rng = np.random.default_rng(2)
    packed = _random_linear(rng, 40, 96, 32)
    x = rng.standard_normal((7, 96)).astype(np.float32)
    seen = []
    # a chunk of 3 fp64 rows of K: forces many N chunks and M chunks
    chunked = golden(x, packed, chunk_bytes=3 * 8 * 96, progress=lambda done, total: seen.append((done, total)))
    # BLAS may block the fp64 sums differently per chunk shape: equal to fp64 rounding, not bitwise
    np.testing.assert_allclose(chunked, golden(x, packed), rtol=1e-13, atol=1e-12)
    assert seen[-1] == (40, 40) and len(seen) == 14


def test_repeated_rows_are_computed_once_with_the_same_result():
    rng = np.random.default_rng(3)
    packed = _random_linear(rng, 32, 64, 16)
    rows = rng.standard_normal((5, 64)).astype(np.float32)
    x = rows[[3, 0, 3, 4, 0, 1, 3, 2, 4, 4]]
    distinct, inverse = distinct_rows(x)
    assert len(distinct) == 5 and np.array_equal(distinct[inverse], x)
    np.testing.assert_allclose(golden(x, packed), x.astype(np.float64) @ packed.dequantized_rows(0, 32).T,
                               rtol=1e-13, atol=1e-12)
    y = x.copy()
    y[1, 7] += 1.0  # a row that differs in one element is its own
    assert len(distinct_rows(y)[0]) == 6


def test_the_ramp_input_has_17_distinct_rows_whatever_m_is():
    for M, K in ((4096, 2048), (70, 1024), (5, 1000)):
        x = make_input("ramp", M, K, 0)
        assert len(distinct_rows(x)[0]) == min(M, 17)


def test_repeated_rows_report_progress_and_a_wrong_k_is_refused():
    import pytest

    rng = np.random.default_rng(4)
    packed = _random_linear(rng, 8, 32, 16)
    x = np.repeat(rng.standard_normal((1, 32)).astype(np.float32), 3, axis=0)  # one distinct row, three times
    seen = []
    golden(x, packed, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(8, 8)]
    with pytest.raises(ValueError, match="input has K=16 but the packed weight has K=32"):
        golden(x[:, :16], packed)
