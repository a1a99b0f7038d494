"""The fp64 golden of linear_dq8ca_q4gsw: y[m, n] = s[m] * sum_k (xq[m, k] - z[m]) * w[n, k].

s, z are torchao's per-row qparams (qparams.choose_qparams, bit-exact), xq = clamp(round(x / s) + z, -128, 127)
with x / s the exact quotient (fp64), w the int4 weights dequantized in fp32 exactly as linear_q4gsw's
(PackedLinear.dequantized_rows). The integer codes xq - z times fp32 weights are exact in fp64, so the golden is
linear_q4gsw's exact product applied to the codes, scaled by s once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from q4gsw.ops.linear_dq8ca_q4gsw.qparams import choose_qparams, op_codes
from q4gsw.ops.linear_q4gsw.golden import golden as linear_golden
from q4gsw.ops.linear_q4gsw.layout import PackedLinear


def golden(x: np.ndarray, packed: PackedLinear, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """fp64 [M, N]. Rows with equal codes (the ramp's 17 distinct rows) are computed once by linear_golden."""
    qparams = choose_qparams(x)
    codes = op_codes(x, qparams).astype(np.float32)  # integers in [-255, 255]: exact in fp32
    return qparams.scale.astype(np.float64)[:, None] * linear_golden(codes, packed, progress=progress)


def eager_fp32(x: np.ndarray, packed: PackedLinear) -> np.ndarray:
    """The op as torchao's converted eager module computes it (the wheel helper's golden), in fp32 numpy:
    x fake-quantized with torchao's x * fl(1 / s), dequantized to fp32 ((xq - z) * s), times the fp32 weights."""
    from q4gsw.ops.linear_dq8ca_q4gsw.qparams import torchao_codes

    qparams = choose_qparams(x)
    dequantized = (torchao_codes(x, qparams).astype(np.float32) * qparams.scale[:, None]).astype(np.float32)
    return dequantized @ packed.dequantized_rows(0, packed.N).astype(np.float32).T
