"""rope's fp64 golden, its fp32 CPU reference and its error model.

x [S, heads, head_dim] holds pairs (x[2i], x[2i+1]) per head (the Llama model's interleaved layout: reshape
(..., -1, 2).unbind(-1)); row s of the tables is position start_pos + s:

    y[s, h, 2i]   = x[s, h, 2i] * cos[s, i] - x[s, h, 2i+1] * sin[s, i]
    y[s, h, 2i+1] = x[s, h, 2i] * sin[s, i] + x[s, h, 2i+1] * cos[s, i]

The tables are inputs (fp32, from the .pte): the kernel computes no sin or cos, so its only error is the
rounding of two products and one sum per output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from q4gsw.ops.rope.tables import RopeTables

TERMS = 2  # products summed per output


def _pairs(x: np.ndarray, tables: RopeTables, dtype: Any) -> tuple[np.ndarray, ...]:
    if x.ndim != 3 or x.shape[2] != 2 * tables.half_dim or x.shape[0] != tables.seq:
        raise ValueError(f"x of shape {x.shape} does not fit tables of {tables.seq} rows x {tables.half_dim} "
                         "pairs: expected [S, heads, 2 * pairs]")
    x = x.astype(dtype)
    c = tables.cos.astype(dtype)[:, None, :]
    s = tables.sin.astype(dtype)[:, None, :]
    return x[..., 0::2], x[..., 1::2], c, s


def _interleave(real: np.ndarray, imag: np.ndarray) -> np.ndarray:
    out = np.empty((*real.shape[:-1], 2 * real.shape[-1]), dtype=real.dtype)
    out[..., 0::2] = real
    out[..., 1::2] = imag
    return out


def golden(x: np.ndarray, tables: RopeTables, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """fp64 [S, heads, head_dim]: the rotation of x by the fp32 tables' entries, exactly."""
    xr, xi, c, s = _pairs(x, tables, np.float64)
    out = _interleave(xr * c - xi * s, xr * s + xi * c)
    if progress is not None:
        progress(1, 1)
    return out


def cpu_reference(x: np.ndarray, tables: RopeTables) -> np.ndarray:
    """fp32, as the eager Llama apply_rotary_emb computes it."""
    xr, xi, c, s = _pairs(x, tables, np.float32)
    return _interleave(xr * c - xi * s, xr * s + xi * c)


def error_model(x: np.ndarray, tables: RopeTables) -> Any:
    """The audit's model: each output is a 'dot product' of TERMS = 2 fp32 products (q4gsw.ops.error_model's K),
    y = a -/+ b with S = |a| + |b|: worst = gamma_3 S (Higham's bound of two products and a sum, K + 1 = 3
    roundings). Bounded errors have no Gaussian tail, so the estimate is the first-order bound of the kernel's
    own arithmetic instead: est = u (|a| + |b| + |y|) (1 + 2u), one rounding of each product and one of the
    result (a fused multiply-add rounds less), which is below worst where a and b cancel. step: what rotating
    the wrong way (sin's sign flipped, the conjugate rotation) changes: 2 |x_i sin| (real) and 2 |x_r sin|
    (imaginary); 0 where sin = 0, so a config at position 0 (cos 1, sin 0: the identity) is BLIND to it, as to
    any rotation bug."""
    from q4gsw.ops.error_model import ErrorModel, U

    xr, xi, c, s = _pairs(x, tables, np.float64)
    S = _interleave(np.abs(xr * c) + np.abs(xi * s), np.abs(xr * s) + np.abs(xi * c))
    first_order = U * (S + np.abs(golden(x, tables))) * (1 + 2 * U)
    sigma = first_order / math.sqrt(2 * math.log(max(S.size, 2)))
    step = _interleave(2 * np.abs(xi * s), 2 * np.abs(xr * s))
    return ErrorModel(S=S, sigma=sigma, step=step, K=TERMS)
