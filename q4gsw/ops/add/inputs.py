"""add's inputs: x[2, rows, width] = (a, b), numpy only, bit-exact from the seed.

ramp     a = q4gsw's ramp ((i % 17) - 8) / 16 over the flattened [rows, width]; b the same ramp one element on
         (every sum exact: a kernel must be exact, and b misplaced by one element moves every output).
normal   a, b independent N(0, 1) draws.
outliers a residual stream and a sublayer output as LLM activations are: q4gsw's outliers pattern (0.1 N(0, 1)
         with ~0.5 % of +-25 / +-60) for both, the middle row of a scaled by 1024 (an outlier row), and two kinds of
         element where rounding decides: b = -a at every 13th element (exact cancellation to 0) and b = a * 2^-25 at
         every 7th other one (b below half an ulp of a: the sum rounds back to a).
"""

from __future__ import annotations

import numpy as np

from q4gsw.ops import inputs

ADD_INPUTS = ("normal", "outliers", "ramp")


def make_operands(name: str, rows: int, width: int, seed: int) -> np.ndarray:
    if name == "ramp":
        a = inputs.ramp(rows, width, seed)
        b = np.roll(a.reshape(-1), -1).reshape(rows, width)
    elif name == "normal":
        a = inputs.normal(rows, width, seed)
        b = inputs.normal(rows, width, seed + 1)
    elif name == "outliers":
        a, b = _outliers(rows, width, seed)
    else:
        raise ValueError(f"add has no input '{name}' (it has {', '.join(ADD_INPUTS)})")
    return np.ascontiguousarray(np.stack([a, b]), dtype=np.float32)


def _outliers(rows: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a = inputs.outliers(rows, width, seed)
    b = inputs.outliers(rows, width, seed + 1)
    a[rows // 2] *= np.float32(1024.0)  # exact: a power of two
    i = np.arange(rows * width).reshape(rows, width)
    cancel = i % 13 == 0
    absorbed = (i % 7 == 3) & ~cancel
    b[cancel] = -a[cancel]
    b[absorbed] = a[absorbed] * np.float32(2.0**-25)
    return a, b
