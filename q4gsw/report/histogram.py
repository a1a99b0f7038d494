"""A small, mergeable histogram of |y - g| over log10, kept in Result.errors.histogram (an Errors field).

The worker does not keep the output arrays, so it records this instead: counts over fixed log10 bins
(the same edges for every config and backend, so histograms can be compared and plotted together),
plus the exact zeros, the errors below/above the bin range and the non-finite outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOG10_MIN, LOG10_MAX, BINS_PER_DECADE = -14.0, 4.0, 4


def edges() -> list[float]:
    count = int((LOG10_MAX - LOG10_MIN) * BINS_PER_DECADE)
    return [LOG10_MIN + i / BINS_PER_DECADE for i in range(count + 1)]


def error_histogram(y: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    """Counts of log10|y - g| over fixed bins; y and g are compared in float64 like compare()."""
    y64 = np.asarray(y, dtype=np.float64).ravel()
    g64 = np.asarray(g, dtype=np.float64).ravel()
    finite = np.isfinite(y64)
    diff = np.abs(y64[finite] - g64[finite])
    zero = int(np.count_nonzero(diff == 0))
    nonzero = diff[diff > 0]
    log = np.log10(nonzero) if nonzero.size else nonzero
    bin_edges = edges()
    counts, _ = np.histogram(log, bins=bin_edges)
    return {"log10_edges": bin_edges, "counts": [int(c) for c in counts], "zero": zero,
            "below": int(np.count_nonzero(log < bin_edges[0])), "above": int(np.count_nonzero(log > bin_edges[-1])),
            "nonfinite": int(np.count_nonzero(~finite))}
