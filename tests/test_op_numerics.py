"""Hand-worked numbers for the ops' goldens, layouts and error models (what mutation testing found no test pinned:
chunk boundaries, progress reports, padding, fp32 rounding of dequantized weights). Every expected value here is
computed by hand or by an independent formula, never by a second call of the function under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from q4gsw.ops.embedding_q4gsw.golden import error_model as embedding_error_model
from q4gsw.ops.embedding_q4gsw.golden import golden as embedding_golden
from q4gsw.ops.embedding_q4gsw.layout import PackedEmbedding
from q4gsw.ops.embedding_q4gsw.layout import as_u32_words as embedding_words
from q4gsw.ops.error_model import U
from q4gsw.ops.linear_qcs4w.golden import golden as qcs4w_golden
from q4gsw.ops.linear_qcs4w.layout import OneGroupView, Qcs4wLinear, pack_qcs4w

# ------------------------------------------------------------------------------------------------
# embedding_q4gsw
# ------------------------------------------------------------------------------------------------

# vocab 3, dim 4, group size 2; row r holds nibbles (low first, is_linear_weight): r, r+1, r+2, r+3 -> q = n - 8
TABLE = PackedEmbedding(weight=np.array([[0x10, 0x32], [0x21, 0x43], [0x32, 0x54]], dtype=np.uint8),
                        scales=np.float32([[1, 2], [3, 4], [5, 6]]), group_size=2, is_linear_weight=True)
ROWS = np.array([[-8 * 1, -7 * 1, -6 * 2, -5 * 2], [-7 * 3, -6 * 3, -5 * 4, -4 * 4], [-6 * 5, -5 * 5, -4 * 6, -3 * 6]],
                dtype=np.float64)


def test_embedding_golden_in_one_row_chunks_reports_every_row():
    indices = np.array([2, 0, 1, 2, 0])
    seen: list[tuple[int, int]] = []
    out = embedding_golden(indices, TABLE, chunk_bytes=1, progress=lambda done, total: seen.append((done, total)))
    assert out.dtype == np.float64 and np.array_equal(out, ROWS[indices])
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]  # a chunk smaller than a row still takes one row


def test_embedding_golden_in_two_row_chunks():
    indices = np.array([1, 1, 2, 0, 2])
    seen: list[tuple[int, int]] = []
    out = embedding_golden(indices, TABLE, chunk_bytes=2 * 8 * 4, progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(out, ROWS[indices]) and seen == [(2, 5), (4, 5), (5, 5)]


def test_embedding_error_model_of_two_outputs():
    # one index, dim 2, one group: g = (q0 s, q1 s) with s = 0.75, nibbles 0x3 and 0xA -> q = -5, 2
    table = PackedEmbedding(weight=np.array([[0xA3]], dtype=np.uint8), scales=np.float32([[0.75]]), group_size=2,
                            is_linear_weight=True)
    model = embedding_error_model(np.array([0]), table)
    g = np.array([[3.75, 1.5]])
    worst = U / (1 - U) * g
    assert np.array_equal(model.S, g) and np.array_equal(model.worst, worst)
    np.testing.assert_allclose(model.sigma, worst / math.sqrt(2 * math.log(2)), rtol=1e-15)
    np.testing.assert_allclose(model.est, worst, rtol=1e-15)  # two outputs: the maximum of a bounded error
    assert model.step.dtype == np.float64 and np.array_equal(model.step, [[0.75, 0.75]])


def test_embedding_words_pad_a_partial_word_and_read_integers_as_bytes():
    six = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint8)
    assert embedding_words(six).tolist() == [0x04030201, 0x00000605]
    assert embedding_words([[1, 2, 3, 4], [5, 6, 7, 8]]).tolist() == [0x04030201, 0x08070605]  # ints as uint8
    assert embedding_words(np.zeros((1, 8), dtype=np.uint8)).tolist() == [0, 0]
    assert embedding_words(np.array([[1, 2, 3, 4, 5]], dtype=np.uint8)).tolist() == [0x04030201, 0x00000005]


def test_embedding_packing_types_and_messages():
    from q4gsw.ops.embedding_q4gsw.layout import pack_int4, unpack_int4

    for flag in (True, False):
        assert unpack_int4(np.array([[0x2F]], dtype=np.uint8), flag).dtype == np.int8
        assert pack_int4(np.array([[7, -8]]), flag).dtype == np.uint8
        assert pack_int4(np.zeros((0, 2), dtype=np.int64), flag).shape == (0, 1)  # an empty table packs
    with pytest.raises(ValueError) as raised:
        pack_int4(np.zeros((2, 3), dtype=np.int64), True)
    assert str(raised.value) == "dim=3 must be even to pack two nibbles per byte"
    with pytest.raises(ValueError) as raised:
        pack_int4(np.array([[8, 0]]), True)
    assert str(raised.value) == "int4 values must lie in [-8, 7]"


# ------------------------------------------------------------------------------------------------
# linear_qcs4w
# ------------------------------------------------------------------------------------------------

# N 3, K 3 (odd: one padding nibble per row); scale 0.1 is not a power of two, so q * s really rounds in fp32
QCS4W = Qcs4wLinear(weight_packed=pack_qcs4w(np.array([[1, -2, 3], [-8, 7, 0], [5, 5, -5]])),
                    scales=np.float32([0.1, 0.3, 2.0]), K=3)


def fp32_weights() -> np.ndarray:
    q = np.array([[1, -2, 3], [-8, 7, 0], [5, 5, -5]], dtype=np.float32)
    return (q * np.float32([0.1, 0.3, 2.0])[:, None]).astype(np.float64)  # each product rounded once in fp32


def test_qcs4w_golden_in_chunks_reports_progress_and_is_the_product_with_fp32_weights():
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32)
    seen: list[tuple[int, int]] = []
    out = qcs4w_golden(x, QCS4W, chunk_bytes=1, progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_array_equal(out, x.astype(np.float64) @ fp32_weights().T)
    assert seen == [(1, 3), (2, 3), (3, 3)]  # one output channel per chunk


def test_one_group_view_reads_the_rows_asked_for():
    view = OneGroupView(QCS4W)
    assert view.N == 3 and view.group_size == 3 and view.scales.shape == (1, 3)
    np.testing.assert_array_equal(view.dequantized_rows(1, 3), fp32_weights()[1:3])
    np.testing.assert_array_equal(view.dequantized_rows(0, 2), fp32_weights()[0:2])


def test_qcs4w_packing_types_and_messages():
    from q4gsw.ops.linear_qcs4w.layout import unpack_qcs4w

    packed = pack_qcs4w(np.array([[7, -8, 1]]))
    assert packed.dtype == np.uint8 and packed.tolist() == [[0xF0, 0x98]]  # even k high; odd K padded with 0 (8)
    unpacked = unpack_qcs4w(packed, 3)
    assert unpacked.dtype == np.int8 and unpacked.tolist() == [[7, -8, 1]]
    assert pack_qcs4w(np.zeros((0, 2), dtype=np.int64)).shape == (0, 1)  # an empty weight packs
    with pytest.raises(ValueError) as raised:
        pack_qcs4w(np.zeros(3, dtype=np.int64))
    assert str(raised.value) == "expected a 2-D [N, K] array, got shape (3,)"
    with pytest.raises(ValueError) as raised:
        pack_qcs4w(np.array([[-9]]))
    assert str(raised.value) == "int4 values must lie in [-8, 7]"


@pytest.mark.parametrize("n0, n1", [(0, 3), (2, 3)])
def test_qcs4w_dequantized_rows_are_fp64_of_fp32_products(n0, n1):
    rows = QCS4W.dequantized_rows(n0, n1)
    assert rows.dtype == np.float64 and np.array_equal(rows, fp32_weights()[n0:n1])


# ------------------------------------------------------------------------------------------------
# linear_dq8ca_q4gsw: torchao's eager fp32 path (the wheel helper's golden)
# ------------------------------------------------------------------------------------------------


def test_dq8ca_eager_fp32_by_hand():
    # row 0 [0, 2.55]: min 0 -> zp -128, scale s0 = fl(2.55 / 255); codes xq - zp = 0, 255.
    # row 1 [-1, 0.5]: scale s1 = fl(1.5 / 255), 1 / s1 ~ 170 -> zp = -128 + 170 = 42; codes -170, 85.
    from q4gsw.ops.linear_dq8ca_q4gsw.golden import eager_fp32
    from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4

    x = np.float32([[0.0, 2.55], [-1.0, 0.5]])
    packed = PackedLinear(weight_packed=pack_int4(np.array([[1, -1], [3, 2]])), scales=np.float32([[0.5, 0.25]]),
                          group_size=2)
    w = np.float32([[0.5, -0.5], [0.75, 0.5]])  # q * scale of each output column, exact
    s = np.float32([np.float32(2.55) / np.float32(255), np.float32(1.5) / np.float32(255)])
    codes = np.float32([[0, 255], [-170, 85]])
    dequantized = codes * s[:, None]  # fp32 products, one rounding each
    expected = np.float32([[dequantized[m, 0] * w[n, 0] + dequantized[m, 1] * w[n, 1] for n in range(2)]
                           for m in range(2)])
    y = eager_fp32(x, packed)
    assert y.dtype == np.float32 and y.shape == (2, 2)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("row, scale, zero_point", [
    # all zero: scale 0 becomes 0.1; min 0 -> -128, max 0 -> 127, and max's 'error' 127 < min's 128 picks 127
    ([0.0, 0.0, 0.0], np.float32(0.1), 127),
    # scale 1e-3 / 255 < 6.1e-5: raised, max stretched to 6.1e-5 * 255 -> zero point -128
    ([0.0, 1e-3], np.float32(6.1e-5), -128),
    # the mirror: min stretched to -6.1e-5 * 255 -> 127
    ([-1e-3, 0.0], np.float32(6.1e-5), 127),
    # both signs: [min, max] amplified by 6.1e-5 / (3e-3 / 255): min / scale = -85, max / scale = 170 -> -43
    ([-1e-3, 2e-3], np.float32(6.1e-5), -43),
    # a normal row keeps torchao's scale 4 / 255; -128 + 63.75 -> -64
    ([-1.0, 3.0], np.float32(4.0) / np.float32(255), -64),
])
def test_executorch_qparams_by_hand(row, scale, zero_point):
    from q4gsw.ops.linear_dq8ca_q4gsw.qparams import executorch_qparams

    qparams = executorch_qparams(np.float32([row]))
    assert qparams.scale.dtype == np.float32 and qparams.zero_point.dtype == np.int8
    assert qparams.scale[0] == scale and int(qparams.zero_point[0]) == zero_point


def test_dq8ca_golden_reports_progress_per_output_chunk():
    from q4gsw.ops.linear_dq8ca_q4gsw.golden import golden as dq8ca_golden
    from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4

    packed = PackedLinear(weight_packed=pack_int4(np.array([[1, -1], [3, 2]])), scales=np.float32([[0.5, 0.25]]),
                          group_size=2)
    seen: list[tuple[int, int]] = []
    y = dq8ca_golden(np.float32([[0.0, 2.55]]), packed, progress=lambda d, t: seen.append((d, t)))
    s = float(np.float32(2.55) / np.float32(255))
    np.testing.assert_array_equal(y, [[s * (255 * -0.5), s * (255 * 0.5)]])  # codes 0, 255 (see eager_fp32 above)
    assert seen == [(2, 2)]


# ------------------------------------------------------------------------------------------------
# The fp32 error model (audit)
# ------------------------------------------------------------------------------------------------


def test_hm_gamma_second_order_term():
    from q4gsw.ops.error_model import hm_gamma

    # lambda = 0 leaves only n u^2 / (1 - u); with n = 2^40 and u = 2^-24 that is 2^-8 / (1 - 2^-24)
    assert hm_gamma(2**40, 0.0) == math.expm1(2.0**-8 / (1 - 2.0**-24))
    assert hm_gamma(4, 1.0) == math.expm1(2 * U + 4 * U * U / (1 - U))


def test_error_model_in_one_output_chunks_is_fp64_of_fp32_data(monkeypatch):
    from q4gsw.ops import error_model as em
    from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4

    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 8)).astype(np.float32)
    q = rng.integers(-8, 8, size=(5, 8))
    scales = rng.uniform(0.1, 0.4, size=(2, 5)).astype(np.float32)  # group size 4
    packed = PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=4)
    monkeypatch.setattr(em, "CHUNK_ELEMENTS", 1)  # one output column (and one group) per chunk
    model = em.error_model(x, packed=packed)
    w = packed.dequantized_rows(0, 5)  # the op's weights (fp32 products, as fp64): pinned by the layout tests
    ax = np.abs(x.astype(np.float64))
    # fp64 sums (to 1e-14: BLAS may order them differently); data summed in fp32 would err by ~1e-7
    np.testing.assert_allclose(model.S, ax @ np.abs(w).T, rtol=1e-14, atol=0)
    step = np.stack([np.max([ax[:, g * 4:(g + 1) * 4].max(axis=1) * abs(float(scales[g, n])) for g in range(2)],
                            axis=0) for n in range(5)], axis=1)
    np.testing.assert_array_equal(model.step, step)
    dense = em.error_model(x.astype(np.float32), w.astype(np.float32), group_size=4)  # no scales: no step
    assert dense.step.dtype == np.float64 and np.isnan(dense.step).all()
    np.testing.assert_allclose(dense.S, ax @ np.abs(w.astype(np.float32).astype(np.float64)).T, rtol=1e-14, atol=0)
