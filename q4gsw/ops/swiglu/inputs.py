"""swiglu's inputs: x[2, rows, width] = (gate, up), numpy only, bit-exact from the seed.

normal   gate = 2 N(0, 1) (an FFN gate's spread: sigmoid anywhere from saturated-low to saturated-high), up N(0, 1).
outliers what breaks a sigmoid: gate = 2 N(0, 1) with every 11th element at +-20 ... +-80 (sigmoid saturated: 1 - 2e-9
         at +20, exp(-g) = 5.5e34 at -80, still finite in fp32), and every 13th up at +-25 / +-60 (q4gsw's outlier
         magnitudes) times up to 16 (large up values, |up| up to 960); the middle row of up scaled by 256 (an
         outlier row).
ramp     gate = q4gsw's ramp ((i % 17) - 8) / 16 (every value exact, |g| <= 1/2), up the same ramp one element on.
"""

from __future__ import annotations

import numpy as np

from q4gsw.ops import inputs

SWIGLU_INPUTS = ("normal", "outliers", "ramp")


def make_gate_up(name: str, rows: int, width: int, seed: int) -> np.ndarray:
    if name == "ramp":
        gate = inputs.ramp(rows, width, seed)
        up = np.roll(gate.reshape(-1), -1).reshape(rows, width)
    elif name == "normal":
        gate = inputs.normal(rows, width, seed) * np.float32(2.0)
        up = inputs.normal(rows, width, seed + 1)
    elif name == "outliers":
        gate, up = _outliers(rows, width, seed)
    else:
        raise ValueError(f"swiglu has no input '{name}' (it has {', '.join(SWIGLU_INPUTS)})")
    return np.ascontiguousarray(np.stack([gate, up]), dtype=np.float32)


def _outliers(rows: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0x5196])
    gate = inputs.normal(rows, width, seed) * np.float32(2.0)
    up = inputs.normal(rows, width, seed + 1)
    i = np.arange(rows * width).reshape(rows, width)
    saturated = i % 11 == 5
    sign = np.where(rng.random((rows, width)) < 0.5, np.float32(-1.0), np.float32(1.0))
    magnitude = np.float32(20.0) + np.float32(60.0) * rng.random((rows, width), dtype=np.float32)
    gate[saturated] = (sign * magnitude)[saturated]
    large = i % 13 == 7
    scale = rng.choice(np.array([-60.0, -25.0, 25.0, 60.0], dtype=np.float32), size=(rows, width))
    up[large] = (scale * np.float32(16.0) * rng.random((rows, width), dtype=np.float32))[large]
    up[rows // 2] *= np.float32(256.0)  # exact: a power of two
    return gate, up
