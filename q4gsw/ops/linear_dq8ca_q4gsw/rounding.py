"""The error model of linear_dq8ca_q4gsw for `audit` and the matrix's tolerances (docs/ops.md).

A correct fp32 kernel differs from the fp64 golden in three ways:

1. fp32 rounding of acc = sum_k (xq - z) * w and of s * acc: q4gsw's dot-product model (q4gsw.ops.error_model) with
   x := the integer codes xq - z, scaled by s; one more rounding (the final multiply) counts in gamma_{K+2}.
2. Tie flips. The kernel rounds an fp32 quotient: WGSL's f32 division is accurate to 2.5 ulp, so where the exact
   x / s lies within TIE_ULPS ulp of a .5 tie the kernel may round to the other neighbour: that code is one step
   off and y[m, n] moves by s[m] * |w[n, k]|. Equal x in a row give equal quotients (a kernel computes the same
   expression for every element), so all elements of one value flip together: the bound per output is
   s * sum over such values v of |sum_{k: x[m,k] = v} w[n, k]|, not the (much larger) sum of |w|.
3. Chained qparams (the choose_qparams kernel on the GPU, the runtime's path): its scale is within SCALE_ULPS ulp
   of torchao's (an fp32 subtraction and a 2.5-ulp division), i.e. relative <= 6u, which moves every quotient
   by <= 6u |x / s| (wider tie windows) and y by <= 6u |y|; its zero point may round to the other neighbour
   where qmin - min / s (or ExecuTorch's qmax - max / s) is within ZERO_POINT_WINDOW of a .5 tie, which changes
   the codes of the elements at the clamp boundary (the row's extremes) by one.

The model covers the chained path (case (b), the looser one); the exact-qparams path (case (a)) is a subset.
What it does not admit are choices that differ from torchao's beyond fp32 rounding: ExecuTorch's
SMALL_SCALE_THRESHOLD (rows whose range is below 255 * 6.1e-5) is such a divergence, and fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from q4gsw.ops.error_model import ErrorModel, U, error_model
from q4gsw.ops.linear_dq8ca_q4gsw.golden import golden
from q4gsw.ops.linear_dq8ca_q4gsw.qparams import (
    QUANT_MAX,
    QUANT_MIN,
    RowQparams,
    choose_qparams,
    op_codes,
    quotients,
)
from q4gsw.ops.linear_q4gsw.layout import PackedLinear

TIE_ULPS = 3.0  # WGSL f32 division: 2.5 ulp; torchao's x * fl(1 / s): 1.5 ulp
SCALE_RELATIVE = 6 * U  # a GPU-computed scale: 0.5 ulp (subtraction) + 2.5 ulp (division) <= 3 ulp <= 6u
ZERO_POINT_WINDOW = SCALE_RELATIVE * 256 + 4 * 2.0**-16  # |min / s| <= 255: scale error + division + subtraction
CHUNK_ELEMENTS = 8 * 2**20


@dataclass
class Dq8caErrorModel(ErrorModel):
    """q4gsw's ErrorModel (S, sigma, step over the codes, times s) plus the deterministic terms of the
    quantization: `flips` [M, N] bounds the tie and zero-point flips, `scaled` [M, N] = relative |y| the chained
    scale's effect on y. audit reads worst, hm_bound, est, step and S: a correct kernel may realize the
    deterministic terms in full, so each of the three bounds adds them."""

    flips: np.ndarray | None = None
    scaled: np.ndarray | None = None

    def _deterministic(self) -> np.ndarray:
        return sum((term for term in (self.flips, self.scaled) if term is not None), np.zeros_like(self.S))

    @property
    def worst(self) -> np.ndarray:
        return super().worst + self._deterministic()

    @property
    def hm_bound(self) -> np.ndarray:
        return super().hm_bound + self._deterministic()

    @property
    def est(self) -> np.ndarray:
        return super().est + self._deterministic()


def _ulp32(values: np.ndarray) -> np.ndarray:
    return np.spacing(np.abs(values).astype(np.float32)).astype(np.float64)


def _round_alternatives(t: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(round(t), the other integer a kernel may reach) where t is within `window` of a .5 tie (else round(t))."""
    rounded = np.round(t)
    tie = np.floor(t) + 0.5
    near = np.abs(t - tie) <= window
    other = np.where(rounded <= tie, rounded + 1, rounded - 1)
    return rounded, np.where(near, other, rounded)


def zero_point_alternatives(x: np.ndarray, qparams: RowQparams, chained: bool) -> np.ndarray:
    """int [M, 3]: the zero points a correct kernel may use per row (torchao's, and its neighbour where the
    exact qmin - min/s or qmax - max/s is within ZERO_POINT_WINDOW of a .5 tie, for chained qparams)."""
    z = qparams.zero_point.astype(np.float64)
    if not chained:
        return np.repeat(z[:, None], 3, axis=1)
    s = qparams.scale.astype(np.float64)
    low = np.minimum(x.min(axis=1), 0).astype(np.float64)
    high = np.maximum(x.max(axis=1), 0).astype(np.float64)
    candidates = [z]
    for exact in (QUANT_MIN - low / s, QUANT_MAX - high / s):
        for side in (-ZERO_POINT_WINDOW, ZERO_POINT_WINDOW):
            candidates.append(np.clip(np.round(exact + side), QUANT_MIN, QUANT_MAX))
    every = np.stack(candidates, axis=1)
    below = np.where((every < z[:, None]).any(axis=1), z - 1, z)
    above = np.where((every > z[:, None]).any(axis=1), z + 1, z)
    return np.stack([z, below, above], axis=1)


def code_deviation(x: np.ndarray, qparams: RowQparams, chained: bool) -> np.ndarray:
    """[M, K]: how many int8 steps a correct kernel's xq - z may differ from the op's at each element."""
    t = quotients(x, qparams)
    window = TIE_ULPS * np.maximum(_ulp32(t), _ulp32(np.floor(t) + 0.5))
    if chained:
        window = window + SCALE_RELATIVE * np.abs(t)
    rounded, other = _round_alternatives(t, window)
    zero_points = zero_point_alternatives(x, qparams, chained)
    z = qparams.zero_point.astype(np.float64)[:, None]
    exact = np.clip(rounded + z, QUANT_MIN, QUANT_MAX) - z
    deviation = np.zeros_like(t)
    for j in range(zero_points.shape[1]):
        zj = zero_points[:, j:j + 1]
        for r in (rounded, other):
            deviation = np.maximum(deviation, np.abs(np.clip(r + zj, QUANT_MIN, QUANT_MAX) - zj - exact))
    return deviation


def flip_bound(x: np.ndarray, packed: PackedLinear, qparams: RowQparams, deviation: np.ndarray) -> np.ndarray:
    """[M, N]: s[m] * sum over the distinct values v of row m whose codes may deviate of
    deviation_v * |sum_{k: x[m,k] = v} w[n, k]| (elements of equal value deviate together)."""
    M, K = x.shape
    N = packed.N
    groups: list[tuple[int, float, np.ndarray]] = []  # (row, deviation, member columns)
    for m in np.flatnonzero(deviation.max(axis=1) > 0):
        columns = np.flatnonzero(deviation[m] > 0)
        values, inverse = np.unique(x[m, columns], return_inverse=True)
        groups += [(int(m), float(deviation[m, columns[inverse == j]].max()), columns[inverse == j])
                   for j in range(len(values))]
    flips = np.zeros((M, N))
    if not groups:
        return flips
    members = np.zeros((len(groups), K))
    for i, (_, _, columns) in enumerate(groups):
        members[i, columns] = 1.0
    rows = np.array([g[0] for g in groups])
    weight = np.array([g[1] for g in groups]) * qparams.scale.astype(np.float64)[rows]
    n_chunk = max(1, CHUNK_ELEMENTS // max(1, K))
    for n0 in range(0, N, n_chunk):
        n1 = min(N, n0 + n_chunk)
        sums = np.abs(members @ packed.dequantized_rows(n0, n1).T) * weight[:, None]  # [groups, n]
        np.add.at(flips[:, n0:n1], rows, sums)
    return flips


def dq8ca_error_model(x: np.ndarray, packed: PackedLinear, chained: bool = True) -> Dq8caErrorModel:
    """The model for input x [M, K] and the op's constants; rows with equal x are done once."""
    x = np.asarray(x, dtype=np.float32)
    unique, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    qparams = choose_qparams(unique)
    codes = op_codes(unique, qparams)
    base = error_model(codes, packed=packed)
    s = qparams.scale.astype(np.float64)[:, None]
    flips = flip_bound(unique, packed, qparams, code_deviation(unique, qparams, chained))
    scaled = (SCALE_RELATIVE if chained else 0.0) * np.abs(golden(unique, packed))
    return Dq8caErrorModel(S=(s * base.S)[inverse], sigma=(s * base.sigma)[inverse], step=(s * base.step)[inverse],
                           K=base.K + 1, flips=flips[inverse], scaled=scaled[inverse])
