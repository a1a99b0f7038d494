"""linear_q4gsw's constants: the one place that knows ExecuTorch's packed-int4 (q4gsw) layout.

Layout, as serialized in the Vulkan delegate of the .pte and consumed unchanged by the WGSL kernels:
- weights: uint8 [N, K/2]; byte j of row n holds element 2j in the low nibble and 2j+1 in the high
  nibble; value = nibble - 8, in [-8, 7] (symmetric, no zero point);
- scales: float32 [K / group_size, padded_N] (transposed relative to the weight);
- y[m, n] = sum_k x[m, k] * q[n, k] * scales[k // group_size, n].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Q4GSW_OPERATOR = "et_vk.linear_q4gsw.default"
NIBBLE_OFFSET = 8


@dataclass(frozen=True)
class PackedLinear:
    """The int4 linear as the GPU kernel sees it."""

    weight_packed: np.ndarray  # uint8 [N, K/2]
    scales: np.ndarray  # float32 [K/group_size, padded_N]
    group_size: int

    @property
    def N(self) -> int:
        return int(self.weight_packed.shape[0])

    @property
    def K(self) -> int:
        return int(self.weight_packed.shape[1]) * 2

    @property
    def padded_N(self) -> int:
        return int(self.scales.shape[1])

    def dequantized_rows(self, n0: int, n1: int) -> np.ndarray:
        """Weights of output rows n0..n1 as the op defines them, in fp64, shape [n1 - n0, K].

        The op dequantizes in fp32: q * scale rounded to fp32, as torchao's dequantize_affine (ExecuTorch's
        reference, custom_ops_lib.linear_q4gsw) and every kernel do. So the golden is the exact fp64 product
        of x with those weights, and equals ExecuTorch's own golden (test_quantized_linear._fp64_golden)."""
        q = unpack_int4(self.weight_packed[n0:n1]).astype(np.float32)
        per_k_scales = np.repeat(self.scales[:, n0:n1].astype(np.float32), self.group_size, axis=0)  # [K, n]
        return (q * per_k_scales.T).astype(np.float64)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """uint8 [N, K/2] -> int8 [N, K] with values in [-8, 7]."""
    packed = np.asarray(packed, dtype=np.uint8)
    out = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int8)
    out[:, 0::2] = (packed & 0x0F).astype(np.int8) - NIBBLE_OFFSET
    out[:, 1::2] = (packed >> 4).astype(np.int8) - NIBBLE_OFFSET
    return out


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int [N, K] in [-8, 7] -> uint8 [N, K/2]; the inverse of unpack_int4."""
    q = np.asarray(q)
    if q.shape[1] % 2:
        raise ValueError(f"K={q.shape[1]} must be even to pack two nibbles per byte")
    if q.min(initial=0) < -NIBBLE_OFFSET or q.max(initial=0) > NIBBLE_OFFSET - 1:
        raise ValueError("int4 values must lie in [-8, 7]")
    nibbles = (q.astype(np.int16) + NIBBLE_OFFSET).astype(np.uint8)
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)


def as_u32_words(weight_packed: np.ndarray) -> np.ndarray:
    """The packed bytes as the little-endian u32 words the kernels bind (zero-padded to a whole word)."""
    flat = np.ascontiguousarray(weight_packed, dtype=np.uint8).reshape(-1)
    pad = (-flat.size) % 4
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, dtype=np.uint8)])
    return flat.view("<u4")


@dataclass(frozen=True)
class DelegateCall:
    """Where an operator that consumes this packing finds it in the .pte's delegate: the calls the delegate runs
    and the argument positions of the packed weights, the scales and group_size in the operator's call."""

    operator: str
    calls: tuple[str, ...]
    weight_arg: int
    scales_arg: int
    group_size_arg: int


# et_vk.linear_q4gsw, the delegate's only call (args: input, weights, scales, group_size, bias, output).
Q4GSW_CALL = DelegateCall(operator=Q4GSW_OPERATOR, calls=(Q4GSW_OPERATOR,), weight_arg=1, scales_arg=2,
                          group_size_arg=3)


def packed_from_delegate(pte_bytes: bytes, call: DelegateCall = Q4GSW_CALL) -> PackedLinear:
    """The packed weights and scales of the .pte's call of `call.operator` (default et_vk.linear_q4gsw)."""
    from q4gsw.export.pte import read_delegate

    delegate = read_delegate(pte_bytes)
    args = delegate.args(call.operator, call.calls)
    return PackedLinear(weight_packed=delegate.constant(args[call.weight_arg], "uint8"),
                        scales=delegate.constant(args[call.scales_arg], "<f4"),
                        group_size=int(delegate.value(args[call.group_size_arg]).int_val))


def tiny_problem() -> tuple[np.ndarray, PackedLinear]:
    """A 1x8x8 (x, constants) of this packing: the buffers a warm child builds a pipeline with before its fixture."""
    tiny = PackedLinear(weight_packed=pack_int4(np.zeros((8, 8), dtype=np.int64)),
                        scales=np.ones((1, 8), dtype=np.float32), group_size=8)
    return np.zeros((1, 8), dtype=np.float32), tiny
