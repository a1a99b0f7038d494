"""Activations that exercise per-row dynamic quantization, beside q4gsw's ramp, normal and outliers.

Each row gets its own scale and zero point, so a kernel that reads another row's (or column's) qparams, the
wrong byte of the packed zero points, or a sign-flipped zero point only shows on inputs whose rows differ in
range and offset: ramp and normal rows all have zero point ~0. numpy only, bit-exactly reproducible.
"""

from __future__ import annotations

import numpy as np

from q4gsw.ops.linear_dq8ca_q4gsw.qparams import choose_qparams

# Rows of one constant value: zero (scale 0 -> eps; ExecuTorch's 0.1 path), positive and negative constants
# (zero point -128 / +127, every code at the clamp boundary), all with range >= 255 * 6.1e-5 so that
# ExecuTorch's SMALL_SCALE_THRESHOLD does not apply.
FLAT_VALUES = np.array([0.0, 1.0, -0.75, 3.5, -2.0, 0.0625, 0.0, -0.03125], dtype=np.float32)


def row_offsets(M: int, K: int, seed: int) -> np.ndarray:
    """Normal rows with per-row magnitude 2^-3..2^3 and offset: centred (zero point ~0), all positive (-128), all
    negative (+127) and one-sided skews (zero points around -90 and +90), cycling with the row."""
    rng = np.random.default_rng([seed, 0xD08C])
    x = rng.standard_normal((M, K), dtype=np.float32)
    magnitude = np.ldexp(np.float32(1.0), rng.integers(-3, 4, size=M)).astype(np.float32)
    kind = np.arange(M) % 4
    x[kind == 1] = np.abs(x[kind == 1]) + np.float32(0.25)
    x[kind == 2] = -np.abs(x[kind == 2]) - np.float32(0.5)
    skew = np.where(np.arange(M) % 8 == 3, np.float32(2.0), np.float32(-2.0))[:, None]
    x[kind == 3] = (x + skew)[kind == 3]
    return (x * magnitude[:, None]).astype(np.float32)


def flat_rows(M: int, K: int, seed: int) -> np.ndarray:
    """Every row one constant (FLAT_VALUES in turn, from a seeded start): the degenerate ranges of choose_qparams."""
    start = int(np.random.default_rng([seed, 0xF1A7]).integers(0, len(FLAT_VALUES)))
    values = FLAT_VALUES[(start + np.arange(M)) % len(FLAT_VALUES)]
    return np.repeat(values[:, None], K, axis=1).astype(np.float32)


def tiny_rows(M: int, K: int, seed: int) -> np.ndarray:
    """Rows whose range is below 255 * 6.1e-5 = 0.0156 (torchao's scale < 6.1e-5): small normal rows, small
    positive rows and small constants. torchao quantizes them at their own scale; ExecuTorch's
    choose_qparams_affine.wgsl raises the scale to its SMALL_SCALE_THRESHOLD 6.1e-5 instead."""
    rng = np.random.default_rng([seed, 0x7111])
    x = rng.standard_normal((M, K), dtype=np.float32) * np.float32(1e-3)
    kind = np.arange(M) % 3
    x[kind == 1] = np.abs(x[kind == 1]) * np.float32(2.0) + np.float32(1e-3)
    x[kind == 2] = np.float32(4e-3)
    return x.astype(np.float32)


# Steps of x / s kept between every element of an `untied` row and a .5 tie: 10x rounding.py's widest window for a
# chained scale (3 ulp + 6u |x / s| + the zero point's, ~1.5e-4 at |x / s| = 128), far below a step (1).
UNTIED_MARGIN = 1e-3


def _untie(row: np.ndarray) -> np.ndarray | None:
    """The row with each element whose x / s lies within UNTIED_MARGIN of a .5 tie moved 2 * UNTIED_MARGIN steps
    away from it (same side), or None where the row's own min or max sits near a tie (its zero point would) or a
    moved element changed the qparams: a correct kernel then has one rounding of every code, whatever its order."""
    qparams = choose_qparams(row[None, :])
    s = float(qparams.scale[0])
    t = row.astype(np.float64) / s
    offset = t - (np.floor(t) + 0.5)
    near = np.abs(offset) < UNTIED_MARGIN
    if near[np.argmin(row)] or near[np.argmax(row)]:
        return None
    moved = np.floor(t) + 0.5 + np.where(offset < 0, -2.0, 2.0) * UNTIED_MARGIN
    untied = np.where(near, (moved * s).astype(np.float32), row).astype(np.float32)
    again = choose_qparams(untied[None, :])
    t = untied.astype(np.float64) / s
    if (again.scale[0] != qparams.scale[0] or again.zero_point[0] != qparams.zero_point[0]
            or (np.abs(t - (np.floor(t) + 0.5)) < UNTIED_MARGIN).any()):
        return None
    return untied


def untied(M: int, K: int, seed: int) -> np.ndarray:
    """Normal rows with no x / s within UNTIED_MARGIN of a .5 tie (rows whose extremes sit near one are drawn
    again): no legitimate tie flip, so a tolerance needs only the fp32 terms of the error model and sees one wrong
    nibble (`normal` at prefill sizes holds elements within fp32 rounding of a tie: a correct kernel may code them
    one int8 step off, and a tolerance admitting that is 2-3 nibble steps wide)."""
    rng = np.random.default_rng([seed, 0x0E7E])
    x = np.empty((M, K), dtype=np.float32)
    for m in range(M):
        row = None
        while row is None:
            row = _untie(rng.standard_normal(K, dtype=np.float32))
        x[m] = row
    return x


INPUTS = {"row_offsets": row_offsets, "flat_rows": flat_rows, "tiny_rows": tiny_rows, "untied": untied}
