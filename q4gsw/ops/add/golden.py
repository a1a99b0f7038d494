"""add's operands, fp64 golden, fp32 CPU reference, TensorMeta uniforms and error model.

x[2, rows, width] holds the two operands: a = x[0], b = x[1, :b_rows, :b_width] (b_rows in {1, rows}, b_width in
{1, width}: a broadcast operand is the top-left corner of its slice). out = a + alpha * b, b broadcast over the
size-1 dims (PyTorch's trailing alignment). The golden is exact: a and b are fp32, alpha is 1 (the .pte's), and
the sum of two fp32 numbers needs at most 24 + (exponent gap) bits, which fp64's 53 hold unless the gap exceeds 29
bits, where the golden's own rounding (2^-53 relative) is 2^29 times below the kernel's. A correct fp32 kernel
rounds once: |y - g| <= u |g|, u = 2^-24 (WGSL requires f32 addition correctly rounded), and y = g exactly where
the sum is representable (Sterbenz cancellation, absorbed tiny b).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

U = 2.0**-24


@dataclass(frozen=True)
class AddGraph:
    """What the kernel receives besides the operands, read from the delegate's aten.add.Tensor: alpha (the
    kernel's override) and b's dims (its TensorMeta: which dims broadcast)."""

    alpha: float
    b_shape: tuple[int, int]


def operands(x: np.ndarray, b_rows: int, b_width: int) -> tuple[np.ndarray, np.ndarray]:
    """(a [rows, width], b [b_rows, b_width]) from the packed input x[2, rows, width]."""
    if x.ndim != 3 or x.shape[0] != 2:
        raise ValueError(f"add's input is x[2, rows, width] = (a, b), got shape {x.shape}")
    rows, width = x.shape[1:]
    if b_rows not in (1, rows) or b_width not in (1, width):
        raise ValueError(f"b [{b_rows}, {b_width}] does not broadcast to [{rows}, {width}]")
    return np.ascontiguousarray(x[0]), np.ascontiguousarray(x[1, :b_rows, :b_width])


def golden(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """fp64 [rows, width]: a + alpha * b, b broadcast."""
    return a.astype(np.float64) + float(alpha) * b.astype(np.float64)


def cpu_reference(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """fp32, as torch's eager add computes it (one rounding; alpha = 1 multiplies exactly)."""
    return (a + np.float32(alpha) * b).astype(np.float32)


def error_model(a: np.ndarray, b: np.ndarray, alpha: float) -> object:
    """The audit's model: each output is one correctly rounded fp32 addition, no sum over a reduction.

    In q4gsw.ops.error_model's terms an output is a 'dot product' of one term (K = 0: worst = gamma_1 |g|). A
    single rounding is a hard bound, not a Gaussian tail: sigma is set so est = worst. step is what a kernel that
    loses or misplaces the second operand changes: |alpha * b| at that output."""
    from q4gsw.ops.error_model import ErrorModel, gamma

    g = np.abs(golden(a, b, alpha))
    worst = gamma(1) * g
    sigma = worst / math.sqrt(2 * math.log(max(g.size, 2)))
    step = np.abs(float(alpha) * np.broadcast_to(b.astype(np.float64), g.shape))
    return ErrorModel(S=g, sigma=sigma, step=step, K=0)
