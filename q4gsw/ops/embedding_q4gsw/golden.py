"""embedding_q4gsw's fp64 golden, its fp32 CPU reference and its error model.

out[i, :] = q[indices[i], :] * scales[indices[i], :] (per group). The golden is the exact product in fp64; a
kernel computes the same product in fp32, so a correct kernel's only error is ONE rounding per output:
|fl(q*s) - q*s| <= u |q*s| with u = 2^-24 (round to nearest; WGSL and Vulkan require f32 multiplication to be
correctly rounded), and 0 where q = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from q4gsw.ops.embedding_q4gsw.layout import PackedEmbedding

# Bytes of fp64 output held per chunk beyond the result itself (the full-vocab gather's golden is 2 GiB).
DEFAULT_CHUNK_BYTES = 64 * 2**20
U = 2.0**-24


def golden(indices: np.ndarray, table: PackedEmbedding, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
           progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """fp64 [M, dim]: the gathered rows, dequantized exactly."""
    indices = _checked(indices, table)
    M = len(indices)
    out = np.empty((M, table.dim), dtype=np.float64)
    rows_per_chunk = max(1, chunk_bytes // (8 * table.dim))
    for m0 in range(0, M, rows_per_chunk):
        m1 = min(M, m0 + rows_per_chunk)
        out[m0:m1] = table.rows(indices[m0:m1])
        if progress is not None:
            progress(m1, M)
    return out


def cpu_reference(indices: np.ndarray, table: PackedEmbedding) -> np.ndarray:
    """fp32 dequantize + gather, as torch's eager embedding of the dequantized table computes it."""
    indices = _checked(indices, table)
    return golden(indices, table).astype(np.float32)


def error_model(indices: np.ndarray, table: PackedEmbedding) -> object:
    """The audit's model for a gather: each output is one fp32 product, no sum.

    In q4gsw.ops.error_model's terms an output is a 'dot product' of one term (K = 0 extra additions, so
    worst = gamma_1 S = u/(1-u) |g| with S = |g|). A single rounding is bounded, so the largest error over
    all outputs is that bound itself, not a Gaussian tail: sigma is set so est = worst. step is what one
    nibble off by one changes: the output's group scale."""
    from q4gsw.ops.error_model import ErrorModel, gamma

    g = np.abs(golden(indices, table))
    worst = gamma(1) * g
    sigma = worst / math.sqrt(2 * math.log(max(g.size, 2)))
    step = np.repeat(np.abs(table.scales[_checked(indices, table)]).astype(np.float64), table.group_size, axis=1)
    return ErrorModel(S=g, sigma=sigma, step=step, K=0)


def _checked(indices: np.ndarray, table: PackedEmbedding) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= table.vocab):
        raise ValueError(f"indices must lie in [0, {table.vocab}), got {int(indices.min())}..{int(indices.max())}")
    return indices.astype(np.int64)
