"""linear_qcs4w's constants: the one place that knows ExecuTorch's per-channel packed-int4 (qcs4w) layout.

Layout, as the Vulkan delegate of the .pte serializes it (executorch/backends/vulkan/_passes/
fuse_quantized_ops.py pack_4bit_weight_tensor) and the WebGPU kernel consumes it unchanged:
- weights: uint8 [N, ceil(K/2)]; byte j of row n holds element 2j in the HIGH nibble and 2j+1 in the low
  nibble (the reverse of linear_q4gsw's packing); value = nibble - 8, in [-8, 7]; an odd K is padded with
  one zero element (nibble 8) per row;
- scales: float32 [N], one per output channel (symmetric: no zero point, no groups along K);
- y[m, n] = sum_k x[m, k] * (q[n, k] * scales[n]), the product q * scale rounded to fp32 first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QCS4W_OPERATOR = "et_vk.linear_qcs4w.default"
NIBBLE_OFFSET = 8


@dataclass(frozen=True)
class Qcs4wLinear:
    """The per-channel int4 linear as the GPU kernel sees it."""

    weight_packed: np.ndarray  # uint8 [N, ceil(K/2)]
    scales: np.ndarray  # float32 [N]
    K: int  # not weight_packed's width * 2: an odd K leaves a padding nibble per row

    @property
    def N(self) -> int:
        return int(self.weight_packed.shape[0])

    @property
    def K_packed(self) -> int:
        return int(self.weight_packed.shape[1])

    def dequantized_rows(self, n0: int, n1: int) -> np.ndarray:
        """Weights of output rows n0..n1 as the op defines them, in fp64, shape [n1 - n0, K].

        q * scale is rounded to fp32 as the quantizer's dequantize_per_channel (the converted module ExecuTorch's
        test takes as its golden) and the kernel (`dq = q * t_scales[n]`) both do; the golden is then the exact fp64
        product of x with those weights."""
        q = unpack_qcs4w(self.weight_packed[n0:n1], self.K).astype(np.float32)
        return (q * self.scales[n0:n1, None].astype(np.float32)).astype(np.float64)


@dataclass(frozen=True)
class OneGroupView:
    """A Qcs4wLinear seen as a group-quantized linear with one group spanning K (group_size = K, scales [1, N]):
    the shape q4gsw.ops.error_model reads (its `step`, one nibble off, uses the channel's scale)."""

    linear: Qcs4wLinear

    @property
    def N(self) -> int:
        return self.linear.N

    @property
    def group_size(self) -> int:
        return self.linear.K

    @property
    def scales(self) -> np.ndarray:
        return self.linear.scales[None, :]

    def dequantized_rows(self, n0: int, n1: int) -> np.ndarray:
        return self.linear.dequantized_rows(n0, n1)


def packed_width(K: int) -> int:
    """Bytes per weight row: ceil(K/2), as the host requires (K_packed == (K + 1) / 2)."""
    return (K + 1) // 2


def unpack_qcs4w(packed: np.ndarray, K: int) -> np.ndarray:
    """uint8 [N, ceil(K/2)] -> int8 [N, K] with values in [-8, 7] (an odd K's padding nibble dropped)."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.shape[1] != packed_width(K):
        raise ValueError(f"packed rows of {packed.shape[1]} bytes do not hold K={K} nibbles "
                         f"(expected {packed_width(K)})")
    out = np.empty((packed.shape[0], 2 * packed.shape[1]), dtype=np.int8)
    out[:, 0::2] = (packed >> 4).astype(np.int8) - NIBBLE_OFFSET
    out[:, 1::2] = (packed & 0x0F).astype(np.int8) - NIBBLE_OFFSET
    return out[:, :K]


def pack_qcs4w(q: np.ndarray) -> np.ndarray:
    """int [N, K] in [-8, 7] -> uint8 [N, ceil(K/2)]; the inverse of unpack_qcs4w. An odd K is padded with a zero
    element, as ExecuTorch's pack_4bit_weight_tensor pads it."""
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"expected a 2-D [N, K] array, got shape {q.shape}")
    if q.min(initial=0) < -NIBBLE_OFFSET or q.max(initial=0) > NIBBLE_OFFSET - 1:
        raise ValueError("int4 values must lie in [-8, 7]")
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), dtype=q.dtype)], axis=1)
    nibbles = (q.astype(np.int16) + NIBBLE_OFFSET).astype(np.uint8)
    return ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).astype(np.uint8)


def constants_from_delegate(pte_bytes: bytes) -> Qcs4wLinear:
    """The packed weights and scales of the .pte's only call, et_vk.linear_qcs4w (args: input, weight, scales,
    output), checked against the host's guards (K_packed == ceil(K/2), scales [N])."""
    from q4gsw.export.pte import DelegateLayoutError, read_delegate

    delegate = read_delegate(pte_bytes)
    args = delegate.args(QCS4W_OPERATOR)
    if len(args) != 4:
        raise DelegateLayoutError(f"{QCS4W_OPERATOR} has {len(args)} arguments, expected 4 (input, weight, scales, "
                                  "output)")
    input_dims = [int(d) for d in delegate.value(args[0]).dims]
    K = input_dims[-1]
    weight = delegate.constant(args[1], "uint8")
    scales = delegate.constant(args[2], "<f4")
    if weight.ndim != 2 or weight.shape[1] != packed_width(K):
        raise DelegateLayoutError(f"packed weight of shape {weight.shape} for K={K}: expected [N, {packed_width(K)}]")
    if scales.shape != (weight.shape[0],):
        raise DelegateLayoutError(f"scales of shape {scales.shape}: expected one per output channel, "
                                  f"({weight.shape[0]},)")
    return Qcs4wLinear(weight_packed=weight, scales=scales, K=K)
