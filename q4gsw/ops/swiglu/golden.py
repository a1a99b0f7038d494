"""swiglu's operands, fp64 golden, fp32 CPU reference and error model.

out = gate * sigmoid(gate) * up = gate * up / (1 + exp(-gate)), elementwise (x[2, rows, width] = (gate, up)). The
golden is that in fp64 from the fp32 operands (exp's fp64 error, ~1e-16 relative, is 10^8 below the kernel's).

ExecuTorch's silu_mul_fused.wgsl (and q4gsw's reference) compute, in f32:
  e = exp(-g); d = 1 + e; s = 1 / d; y = (g * s) * up.
WGSL's stated accuracy: exp(x) within 3 + 2|x| ULP, x / y (and 1 / y) within 2.5 ULP, + and * correctly rounded
(WGSL spec, "Floating Point Accuracy"). One ULP of an f32 result is at most 2u of it (u = 2^-24). e's relative error
reaches y through d = 1 + e scaled by e / (1 + e) = sigmoid(-g), so per output
  |y - g_true| <= |y| ((3 + 2|g|) 2u sigmoid(-g) + (1 + 5 + 1 + 1) u)
(d's rounding, the division, the two products), to first order. The exp term dominates for large negative g: at
g = -80 the bound is 334u |y| = 2.0e-5 |y|; for |g| <= 5 at most 34u. No sum: no growth with rows or width.
"""

from __future__ import annotations

import math

import numpy as np

U = 2.0**-24


def operands(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gate, up), each [rows, width], from the packed input x[2, rows, width]."""
    if x.ndim != 3 or x.shape[0] != 2:
        raise ValueError(f"swiglu's input is x[2, rows, width] = (gate, up), got shape {x.shape}")
    return np.ascontiguousarray(x[0]), np.ascontiguousarray(x[1])


def golden(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    g = gate.astype(np.float64)
    return g * up.astype(np.float64) / (1.0 + np.exp(-g))


def cpu_reference(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """fp32, as torch's eager F.silu(gate) * up computes it on the CPU."""
    with np.errstate(over="ignore"):
        return (gate / (np.float32(1.0) + np.exp(-gate)) * up).astype(np.float32)


def relative_bound(gate: np.ndarray) -> np.ndarray:
    """The per-output bound on |y - g| / |y| of the WGSL sequence above (module docstring)."""
    g = gate.astype(np.float64)
    sigmoid_minus_g = 0.5 * (1.0 - np.tanh(g / 2.0))  # sigmoid(-g), no overflow
    return (3.0 + 2.0 * np.abs(g)) * 2.0 * U * sigmoid_minus_g + 8.0 * U


def error_model(gate: np.ndarray, up: np.ndarray) -> object:
    """The audit's model in q4gsw.ops.error_model's terms: no sum (K = 0), S chosen so worst = gamma_1 S is the bound
    above; a bound per element, not a Gaussian tail, so est = worst. step is what a sign slip in the exponent
    (sigmoid(-g) for sigmoid(g)) changes: |g up| |tanh(g / 2)|."""
    from q4gsw.ops.error_model import ErrorModel, gamma

    y = np.abs(golden(gate, up))
    worst = relative_bound(gate) * y
    sigma = worst / math.sqrt(2 * math.log(max(y.size, 2)))
    g = gate.astype(np.float64)
    step = np.abs(g * up.astype(np.float64) * np.tanh(g / 2.0))
    return ErrorModel(S=worst / gamma(1), sigma=sigma, step=step, K=0)
