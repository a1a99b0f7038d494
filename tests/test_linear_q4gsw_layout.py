"""The int4 layout of op linear_q4gsw (q4gsw.ops.linear_q4gsw.layout): nibble order, packing, u32 words and
dequantized rows."""

import numpy as np
import pytest

from q4gsw.ops.linear_q4gsw.layout import PackedLinear, as_u32_words, pack_int4, unpack_int4


def test_nibble_order_low_is_even_element():
    # byte 0x2F: low nibble 0xF -> element 0 = 7, high nibble 0x2 -> element 1 = -6; 0x80 -> -8, 0
    packed = np.array([[0x2F, 0x80]], dtype=np.uint8)
    assert unpack_int4(packed).tolist() == [[7, -6, -8, 0]]


def test_pack_unpack_roundtrip_all_values():
    q = np.tile(np.arange(-8, 8), (3, 2))
    assert np.array_equal(unpack_int4(pack_int4(q)), q)


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([[8, 0]]))


def test_u32_words_are_little_endian_bytes():
    packed = np.array([[0x01, 0x02, 0x03, 0x04]], dtype=np.uint8)
    assert as_u32_words(packed).tolist() == [0x04030201]


def test_dequantized_rows_apply_transposed_group_scales():
    q = np.array([[1, -2, 3, -4], [7, -8, 0, 1]])
    scales = np.array([[0.5, 2.0], [0.25, 4.0]], dtype=np.float32)  # [K/group, N], group 2
    packed = PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=2)
    expected = np.array([[0.5, -1.0, 0.75, -1.0], [14.0, -16.0, 0.0, 4.0]])
    assert np.array_equal(packed.dequantized_rows(0, 2), expected)
    assert np.array_equal(packed.dequantized_rows(1, 2), expected[1:])
    assert (packed.N, packed.K, packed.padded_N) == (2, 4, 2)


def _fp32_product(q: int, scale: np.float32) -> float:
    """q * scale rounded once to fp32, computed without numpy's fp32 arithmetic: an int4 times an fp32 is exact in
    fp64 (4 + 24 significant bits), so rounding the Python float product to fp32 is the correctly rounded fp32
    product that IEEE fp32 multiplication gives."""
    return float(np.float32(float(q) * float(scale)))


def test_dequantized_rows_round_each_product_to_fp32():
    """The op dequantizes in fp32 (layout.py): with scales that are not powers of two, q * scale in fp64 differs
    from the fp32-rounded product, so dequantizing in fp64 fails here (issue 22: it was caught only by an e2e
    test, the test above uses power-of-two scales where both agree)."""
    rng = np.random.default_rng(22)
    N, K, group = 6, 16, 4
    q = rng.integers(-8, 8, size=(N, K))
    scales = (rng.uniform(0.01, 0.3, size=(K // group, N + 2))).astype(np.float32)  # padded_N = N + 2
    packed = PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group)
    expected = np.array([[_fp32_product(int(q[n, k]), scales[k // group, n]) for k in range(K)] for n in range(N)])
    got = packed.dequantized_rows(0, N)
    assert got.dtype == np.float64 and got.tobytes() == expected.tobytes()  # bit-exact
    assert packed.dequantized_rows(2, 5).tobytes() == expected[2:5].tobytes()
    in_fp64 = np.array([[float(q[n, k]) * float(scales[k // group, n]) for k in range(K)] for n in range(N)])
    assert not np.array_equal(in_fp64, expected)  # the scales really tell fp32 from fp64 dequantization


def test_golden_is_the_fp64_product_with_the_fp32_dequantized_weights():
    """golden.py's y = x @ W.T with W dequantized in fp32; the oracle sums each row exactly (math.fsum) in plain
    Python, so the only difference allowed is the fp64 summation's rounding, far below the fp32 dequantization's
    ~1e-8 relative effect that an fp64 dequantization would show."""
    import math

    from q4gsw.ops.linear_q4gsw.golden import golden

    rng = np.random.default_rng(23)
    M, N, K, group = 3, 5, 32, 8
    q = rng.integers(-8, 8, size=(N, K))
    scales = rng.uniform(0.01, 0.3, size=(K // group, N)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    packed = PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group)
    expected = np.array([[math.fsum(float(x[m, k]) * _fp32_product(int(q[n, k]), scales[k // group, n])
                                    for k in range(K)) for n in range(N)] for m in range(M)])
    got = golden(x, packed)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)  # fp64 summation order: ~1e-14 here
    in_fp64 = np.array([[math.fsum(float(x[m, k]) * float(q[n, k]) * float(scales[k // group, n]) for k in range(K))
                         for n in range(N)] for m in range(M)])
    assert np.abs(in_fp64 - expected).max() > 1e-9  # an fp64 dequantization would fail the check above


def test_unpacked_values_are_int8():
    assert unpack_int4(np.array([[0x2F]], dtype=np.uint8)).dtype == np.int8


def test_u32_words_pad_a_partial_word_with_zeros():
    packed = np.array([[0x01, 0x02, 0x03, 0x04, 0x05]], dtype=np.uint8)
    assert as_u32_words(packed).tolist() == [0x04030201, 0x00000005]


def test_pack_says_why_it_refuses():
    with pytest.raises(ValueError, match=r"^K=3 must be even to pack two nibbles per byte$"):
        pack_int4(np.zeros((1, 3), dtype=int))
    with pytest.raises(ValueError, match=r"^int4 values must lie in \[-8, 7\]$"):
        pack_int4(np.array([[-9, 0]]))
