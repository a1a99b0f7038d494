"""rms_norm's fp64 golden, its fp32 numpy reference, and the error model `audit` reads.

y[r, i] = x[r, i] * R[r] * w[i],  R[r] = 1 / sqrt(s[r] / n + eps),  s[r] = sum_i x[r, i]^2,  n = width.

eps is what the kernel receives: the .pte holds it as a double and ExecuTorch's host narrows it to fp32
(RmsNorm.cpp), so the golden adds float32(eps), in fp64.

Error model of an fp32 kernel (u = 2^-24; WGSL's stated accuracy: `/` 2.5 ULP, inverseSqrt 2 ULP, + and * correctly
rounded; one ULP of an fp32 value is at most 2u of it):
  s      n squares and n - 1 additions, any order: |ds| <= gamma_n s (all terms >= 0: no cancellation)
  m      s / n: 2.5 ULP <= 5u;  d = m + eps: u
  R      d^(-1/2) halves d's relative error; inverseSqrt adds 2 ULP <= 4u
  y      (x R) w: two products, gamma_2
  worst (relative to |y|):  1/2 (gamma_n + 5u) m/d + u/2 + 4u + gamma_2
  est: the sum's error as a sequential fp32 sum makes it, sigma_s = u/sqrt(3) sqrt(sum_j P_j^2 + sum_j t_j^2)
       (t_j = x_j^2 each rounded once, P_j the running sums), one Gaussian tail over the rows (a row's error is
       shared by its elements): sqrt(2 ln rows) sigma_s / (2 s) * m/d, plus the fixed terms at their bound.
  step: the smallest plausible bug, the sum of one element of average square off (dropped, counted twice, or the
        mean divided by n - 1): R moves by 1/(2n) m/d relative.
m/d <= 1 is the share of the mean square in d: a row whose mean square is near eps (an all-zero row) errs less.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from q4gsw.ops.rms_norm.layout import NormWeights

U = 2.0**-24
ROWS_PER_CHUNK = 1024  # fp64 rows held at once


def golden(x: np.ndarray, constants: NormWeights, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    rows, width = x.shape
    w = constants.weight.astype(np.float64)
    eps = float(np.float32(constants.eps))
    out = np.empty((rows, width), dtype=np.float64)
    for r0 in range(0, rows, ROWS_PER_CHUNK):
        x64 = x[r0:r0 + ROWS_PER_CHUNK].astype(np.float64)
        inv_rms = 1.0 / np.sqrt((x64 * x64).sum(axis=1, keepdims=True) / width + eps)
        out[r0:r0 + ROWS_PER_CHUNK] = x64 * inv_rms * w
        if progress:
            progress(min(rows, r0 + ROWS_PER_CHUNK), rows)
    return out


def cpu_reference(x: np.ndarray, constants: NormWeights) -> np.ndarray:
    """The Llama module's eager arithmetic in fp32: x * rsqrt(mean(x * x) + eps) * weight."""
    x = np.asarray(x, dtype=np.float32)
    mean = (x * x).mean(axis=1, keepdims=True, dtype=np.float32)
    return (x * (np.float32(1.0) / np.sqrt(mean + np.float32(constants.eps)))) * constants.weight


def relative_terms(x: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """Per row: worst, est (before the tail factor) and step, relative to |y| (see the module docstring)."""
    from q4gsw.ops.error_model import gamma

    x64 = np.asarray(x, dtype=np.float64)
    n = x64.shape[1]
    t = x64 * x64
    s = t.sum(axis=1)
    m = s / n
    share = m / (m + float(np.float32(eps)))
    partial = np.cumsum(t, axis=1)
    sigma_s = U / math.sqrt(3) * np.sqrt((partial * partial).sum(axis=1) + (t * t).sum(axis=1))
    fixed = 0.5 * 5 * U * share + 0.5 * U + 4 * U + gamma(2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sum_rel = np.where(s > 0, sigma_s / s, 0.0)
    return {"worst": 0.5 * gamma(n) * share + fixed, "sigma": 0.5 * sum_rel * share, "fixed": fixed,
            "step": 0.5 * share / n}


def error_model(x: np.ndarray, constants: NormWeights) -> Any:
    """The model in q4gsw.ops.error_model's terms (audit): K = n, S scaled so worst = gamma_{n+1} S is the bound
    above, sigma so that the audit's sqrt(2 ln outputs) sigma is the row-tail estimate above, step per element."""
    from q4gsw.ops.error_model import ErrorModel, gamma

    rows, width = x.shape
    g = np.abs(golden(x, constants))
    terms = relative_terms(x, constants.eps)
    est_rel = math.sqrt(2 * math.log(max(rows, 2))) * terms["sigma"] + terms["fixed"]
    sigma = g * est_rel[:, None] / math.sqrt(2 * math.log(max(g.size, 2)))
    S = g * terms["worst"][:, None] / gamma(width + 1)
    return ErrorModel(S=S, sigma=sigma, step=g * terms["step"][:, None], K=width)
