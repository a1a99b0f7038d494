"""Activations that exercise per-row dynamic quantization, beside q4gsw's ramp, normal and outliers.

Each row gets its own scale and zero point, so a kernel that reads another row's (or column's) qparams, the
wrong byte of the packed zero points, or a sign-flipped zero point only shows on inputs whose rows differ in
range and offset: ramp and normal rows all have zero point ~0. numpy only, bit-exactly reproducible.
"""

from __future__ import annotations

import numpy as np

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


INPUTS = {"row_offsets": row_offsets, "flat_rows": flat_rows, "tiny_rows": tiny_rows}
