"""fp64 golden of linear_qcs4w: y = x @ (q * scale[n]).T, from the packed constants exactly as the kernel gets them.

The chunking over N (bounded memory for lm_head) and the reuse of repeated input rows are linear_q4gsw's
(q4gsw/ops/linear_q4gsw/golden.py), which only asks the constants for K, N and dequantized_rows: the op's
meaning lives in Qcs4wLinear.dequantized_rows (per-channel scale, q * scale rounded to fp32)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from q4gsw.ops.linear_q4gsw.golden import DEFAULT_CHUNK_BYTES
from q4gsw.ops.linear_q4gsw.golden import golden as chunked_golden
from q4gsw.ops.linear_qcs4w.layout import Qcs4wLinear


def golden(x: np.ndarray, constants: Qcs4wLinear, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
           progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """fp64 [M, N]."""
    return chunked_golden(x, constants, chunk_bytes=chunk_bytes, progress=progress)  # type: ignore[arg-type]
