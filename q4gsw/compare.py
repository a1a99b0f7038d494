"""The one comparison: element-wise |y - g| <= atol + rtol * |g|, with hard gates on NaN/Inf."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from q4gsw.matrix.values import Errors, Tolerance


@dataclass(frozen=True)
class Comparison:
    """The verdict of compare() and what it measured."""

    passed: bool
    message: str
    errors: Errors


def compare(y: np.ndarray, g: np.ndarray, tolerance: Tolerance) -> Comparison:
    if y.shape != g.shape:
        raise ValueError(f"output shape {y.shape} != golden shape {g.shape}")
    if g.ndim != 2:  # an output of any rank is compared as rows of its last dimension: (m, n) index that view
        y, g = y.reshape(-1, g.shape[-1]), g.reshape(-1, g.shape[-1])
    y64 = y.astype(np.float64)
    nonfinite_mask = ~np.isfinite(y64)
    nonfinite = int(nonfinite_mask.sum())
    first_nonfinite = None
    if nonfinite:
        flat = int(np.flatnonzero(nonfinite_mask)[0])
        first_nonfinite = (flat // g.shape[1], flat % g.shape[1])
    diff = np.abs(y64 - g)
    diff[nonfinite_mask] = np.inf
    golden_abs = np.abs(g)
    bound = tolerance.bound(golden_abs)
    with np.errstate(over="ignore"):  # |err| / a subnormal bound (or |g| = 0 below) is legitimately inf
        ratio = np.divide(diff, bound, out=np.where(diff > 0, np.inf, 0.0), where=bound > 0)
    mismatches = int(np.count_nonzero(~(diff <= bound)))
    worst_flat = int(np.argmax(ratio)) if ratio.size else 0
    worst = (worst_flat // g.shape[1], worst_flat % g.shape[1]) if ratio.size else (0, 0)
    finite = ~nonfinite_mask
    max_abs = float(diff[finite].max()) if finite.any() else float("inf")
    with np.errstate(over="ignore"):
        rel = diff[finite] / np.maximum(golden_abs[finite], np.finfo(np.float64).tiny)
    max_rel = float(rel.max()) if rel.size else float("inf")
    signal = float(np.sum(g * g))
    nmse = float(np.sum((y64[finite] - g[finite]) ** 2) / signal) if signal > 0 else float(np.sum(diff[finite] ** 2))
    headroom = float(ratio.max()) if ratio.size else 0.0
    broken_golden = int(np.count_nonzero(~np.isfinite(g)))
    passed = nonfinite == 0 and mismatches == 0 and broken_golden == 0
    if broken_golden:
        flat = int(np.flatnonzero(~np.isfinite(g))[0])
        message = (f"the golden holds {broken_golden} non-finite values, first at (m, n) = "
                   f"({flat // g.shape[1]}, {flat % g.shape[1]}): nothing can be compared with it; re-export the "
                   "fixture")
    elif nonfinite:
        message = f"{nonfinite} non-finite outputs, first at (m, n) = {first_nonfinite}"
    elif mismatches:
        m, n = worst
        message = (f"{mismatches}/{g.size} elements out of tolerance; worst (m, n) = ({m}, {n}): "
                   f"got {y64[m, n]:.9g}, golden {g[m, n]:.9g}, |err| {diff[m, n]:.3g} > "
                   f"{bound[m, n]:.3g} (atol {tolerance.atol:g} + rtol {tolerance.rtol:g}*|g|)")
    else:
        message = f"max |err| {max_abs:.3g}, headroom {headroom:.3f}"
    return Comparison(passed=passed, message=message, errors=Errors(
        max_abs=max_abs, max_rel=max_rel, worst_index=worst, mismatches=mismatches, elements=int(g.size), nmse=nmse,
        headroom=headroom, nonfinite=nonfinite, first_nonfinite=first_nonfinite))
