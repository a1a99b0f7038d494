"""embedding_q4gsw's constants: the one place that knows the packed int4 embedding table's layout.

Layout, as serialized in the Vulkan delegate of the .pte (args of et_vk.embedding_q4gsw: weight, scales,
group_size, indices, is_linear_weight, out) and consumed unchanged by the WGSL kernels:
- weight: uint8 [vocab, dim/2], row r holds the dim int4 values of table row r; byte j holds dims 2j and 2j+1.
  Which nibble holds which depends on is_linear_weight:
  false (quantized_decomposed.embedding_4bit, EmbeddingQuantHandler's state_dict): dim 2j in the HIGH nibble;
  true (4-bit linear packing): dim 2j in the LOW nibble. The Vulkan partitioner's fusion
  (backends/vulkan/patterns/quantized_embedding.py) repacks the table to the linear packing and passes true,
  so every exported .pte holds true; false is what the quantizer's state_dict (and the wheel's golden) uses.
- value = nibble - 8, in [-8, 7] (symmetric, no zero point);
- scales: float32 [vocab, dim/group_size] (one row of group scales per table row, NOT transposed);
- out[i, d] = q[indices[i], d] * scales[indices[i], d // group_size].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMBEDDING_OPERATOR = "et_vk.embedding_q4gsw.default"
NIBBLE_OFFSET = 8


@dataclass(frozen=True)
class PackedEmbedding:
    """The int4 embedding table as the GPU kernel sees it."""

    weight: np.ndarray  # uint8 [vocab, dim/2]
    scales: np.ndarray  # float32 [vocab, dim/group_size]
    group_size: int
    is_linear_weight: bool  # nibble order: True = dim 2j in the low nibble

    @property
    def vocab(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1]) * 2

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Table rows `indices` dequantized exactly, in fp64, shape [len(indices), dim].

        q (3 bits of magnitude) times an fp32 scale (24 significant bits) needs at most 27 significant bits, so
        the fp64 product is exact: this is the op's meaning before any fp32 rounding."""
        q = unpack_int4(self.weight[indices], self.is_linear_weight).astype(np.float64)
        scales = np.repeat(self.scales[indices].astype(np.float64), self.group_size, axis=1)
        return q * scales


def unpack_int4(packed: np.ndarray, is_linear_weight: bool) -> np.ndarray:
    """uint8 [R, dim/2] -> int8 [R, dim] with values in [-8, 7], in the given nibble order."""
    packed = np.asarray(packed, dtype=np.uint8)
    low = (packed & 0x0F).astype(np.int8) - NIBBLE_OFFSET
    high = (packed >> 4).astype(np.int8) - NIBBLE_OFFSET
    even, odd = (low, high) if is_linear_weight else (high, low)
    out = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int8)
    out[:, 0::2] = even
    out[:, 1::2] = odd
    return out


def pack_int4(q: np.ndarray, is_linear_weight: bool) -> np.ndarray:
    """int [R, dim] in [-8, 7] -> uint8 [R, dim/2]; the inverse of unpack_int4."""
    q = np.asarray(q)
    if q.shape[1] % 2:
        raise ValueError(f"dim={q.shape[1]} must be even to pack two nibbles per byte")
    if q.min(initial=0) < -NIBBLE_OFFSET or q.max(initial=0) > NIBBLE_OFFSET - 1:
        raise ValueError("int4 values must lie in [-8, 7]")
    nibbles = (q.astype(np.int16) + NIBBLE_OFFSET).astype(np.uint8)
    even, odd = nibbles[:, 0::2], nibbles[:, 1::2]
    low, high = (even, odd) if is_linear_weight else (odd, even)
    return (low | (high << 4)).astype(np.uint8)


def as_u32_words(weight: np.ndarray) -> np.ndarray:
    """The packed bytes as the little-endian u32 words the kernels bind (dim % 32 == 0: rows are whole words)."""
    flat = np.ascontiguousarray(weight, dtype=np.uint8).reshape(-1)
    pad = (-flat.size) % 4
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, dtype=np.uint8)])
    return flat.view("<u4")


def packed_from_delegate(pte_bytes: bytes) -> PackedEmbedding:
    """The table of the .pte's only call, et_vk.embedding_q4gsw (args: weight, scales, group_size, indices,
    is_linear_weight, out)."""
    from q4gsw.export.pte import DelegateLayoutError, read_delegate

    delegate = read_delegate(pte_bytes)
    args = delegate.args(EMBEDDING_OPERATOR)
    if len(args) != 6:
        raise DelegateLayoutError(f"{EMBEDDING_OPERATOR} has {len(args)} arguments, expected 6 (weight, scales, "
                                  "group_size, indices, is_linear_weight, out)")
    weight = delegate.constant(args[0], "uint8")
    scales = delegate.constant(args[1], "<f4")
    if weight.ndim != 2 or scales.ndim != 2 or scales.shape[0] != weight.shape[0]:
        raise DelegateLayoutError(f"weight {weight.shape} and scales {scales.shape} are not [vocab, dim/2] and "
                                  "[vocab, groups]")
    flag = delegate.value(args[4])
    is_linear = bool(flag.bool_val) if hasattr(flag, "bool_val") else bool(flag.int_val)
    return PackedEmbedding(weight=weight, scales=scales, group_size=int(delegate.value(args[2]).int_val),
                           is_linear_weight=is_linear)
