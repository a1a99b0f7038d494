"""fp64 reference: y = x @ dequant(W).T, computed from the unpacked .pte data in bounded-memory chunks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from q4gsw.ops.linear_q4gsw.layout import PackedLinear

# Bytes of fp64 dequantized weight held at once; lm_head's full fp64 weight would be 2 GiB.
DEFAULT_CHUNK_BYTES = 64 * 2**20


def distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of x in first-seen order, each row's index among them): x == distinct[inverse]."""
    first: dict[bytes, int] = {}
    inverse = np.fromiter((first.setdefault(row.tobytes(), len(first)) for row in x), dtype=np.intp,
                          count=len(x))
    _, first_rows = np.unique(inverse, return_index=True)
    return x[first_rows], inverse


def golden(x: np.ndarray, packed: PackedLinear, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
           progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """fp64 [M, N]; memory beyond x and y stays under ~chunk_bytes whatever N and M are.

    Each output row depends only on its input row, so repeated rows are computed once: the ramp input has
    17 distinct rows whatever M is (q_proj_4k: 17 rows of products instead of 4096)."""
    M, K = x.shape
    if K != packed.K:
        raise ValueError(f"input has K={K} but the packed weight has K={packed.K}")
    distinct, inverse = distinct_rows(x)
    if len(distinct) < M:
        return _golden(distinct, packed, chunk_bytes, progress)[inverse]
    return _golden(x, packed, chunk_bytes, progress)


def _golden(x: np.ndarray, packed: PackedLinear, chunk_bytes: int,
            progress: Callable[[int, int], None] | None) -> np.ndarray:
    M, K = x.shape
    N = packed.N
    rows_per_chunk = max(1, chunk_bytes // (8 * K))
    m_per_chunk = max(1, chunk_bytes // (8 * K))
    y = np.empty((M, N), dtype=np.float64)
    for n0 in range(0, N, rows_per_chunk):
        n1 = min(N, n0 + rows_per_chunk)
        w_t = packed.dequantized_rows(n0, n1).T  # [K, n]
        for m0 in range(0, M, m_per_chunk):
            m1 = min(M, m0 + m_per_chunk)
            y[m0:m1, n0:n1] = x[m0:m1].astype(np.float64) @ w_t
        if progress is not None:
            progress(n1, N)
    return y
