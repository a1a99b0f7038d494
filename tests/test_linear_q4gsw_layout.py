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


def test_unpacked_values_are_int8():
    assert unpack_int4(np.array([[0x2F]], dtype=np.uint8)).dtype == np.int8


def test_dequantized_rows_round_each_product_to_fp32():
    """The op dequantizes in fp32 (q * scale rounded to fp32, as torchao and every kernel do): with scales that are
    not powers of two the fp32 product differs from the exact one, and the exact one would be wrong."""
    q = np.array([[7, -3, 5, 1]])
    scales = np.array([[0.1], [0.3]], dtype=np.float32)  # [K/group, N], group 2
    packed = PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=2)
    # q * scale is exact in fp64 (a 24-bit significand times a 4-bit integer); np.float32() rounds it once.
    exact = [int(q[0, k]) * float(scales[k // 2, 0]) for k in range(4)]
    rounded = [float(np.float32(v)) for v in exact]
    assert rounded != exact  # these scales make the fp32 rounding visible
    assert packed.dequantized_rows(0, 1).tolist() == [rounded]


def test_u32_words_pad_a_partial_word_with_zeros():
    packed = np.array([[0x01, 0x02, 0x03, 0x04, 0x05]], dtype=np.uint8)
    assert as_u32_words(packed).tolist() == [0x04030201, 0x00000005]


def test_pack_says_why_it_refuses():
    with pytest.raises(ValueError, match=r"^K=3 must be even to pack two nibbles per byte$"):
        pack_int4(np.zeros((1, 3), dtype=int))
    with pytest.raises(ValueError, match=r"^int4 values must lie in \[-8, 7\]$"):
        pack_int4(np.array([[-9, 0]]))
