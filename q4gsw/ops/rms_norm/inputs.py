"""rms_norm's inputs and norm weights: numpy only, so any machine regenerates them bit for bit.

Inputs x [rows, width] (matrix.toml `inputs`):
  normal         standard normal activations (mean square ~1: eps = 1e-5 moves y by ~5e-6 relative)
  outliers       what breaks norms in real models: rows alternate between a small residual-stream scale
                 (0.02, as Llama's embeddings and early layers: mean square ~4e-4, so eps moves y by ~1 %) and
                 scale 1; rows r % 4 in {0, 1} (row 0, the BOS token, included) carry OUTLIER_CHANNELS fixed
                 channels (the same in every row, as real activation outliers are) at 100-1000x the row's scale
  ramp           q4gsw's ramp ((i % 17) - 8) / 16 over the flattened input (exact in fp32)
  upstream_ramp  ExecuTorch's test_rms_norm._ramp: linspace(-1, 1, rows * width) reshaped
  distinct_rows  test_rms_norm._distinct_rows: row r is linspace(-1, 1, width) * 10^(r - 2) (rows <= 8)
  mixed_sign     test_rms_norm._mixed_sign (rows = 4, width even): -base; 1e-4 everywhere (eps-dominated);
                 base with alternating signs; base; base = linspace(0.1, 1, width)
  constant       0.7 everywhere (test_rms_norm's width_1 case)

Norm weights (matrix.toml `weights`), each with the eps of the module it comes from:
  llama             executorch.examples.models.llama.norm.RMSNorm(width, eps=1e-5) (Llama-3.2-1B's norm_eps),
                    weight drawn after torch.manual_seed(weight_seed) from N(1, 0.5): not all ones, both signs
                    and near-zero gains occur (the export recipe draws it; synthetic_constants uses numpy)
  linspace          test_rms_norm's RmsNormModule(width, eps=1e-6) with weight linspace(0.5, 1.5, width)
  zeros_neg         the same module, weight linspace(-1, 1, width) with w[0] = w[width // 2] = 0
  upstream_width_1  the same module, weight 1.3 everywhere (test_rms_norm's width_1 case)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

OUTLIER_CHANNELS = 4
LLAMA_EPS = 1e-5  # Llama-3.2-1B's params.json norm_eps
UPSTREAM_EPS = 1e-6  # every case of ExecuTorch's test_rms_norm.py
WEIGHT_EPS = {"llama": LLAMA_EPS, "linspace": UPSTREAM_EPS, "zeros_neg": UPSTREAM_EPS,
              "upstream_width_1": UPSTREAM_EPS}
MAX_DISTINCT_ROWS = 8  # 10^(r - 2) stays far inside fp32 (and its square) for r < 8


def normal(rows: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0x4E05]).standard_normal((rows, width), dtype=np.float32)


def outliers(rows: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0x0071])
    scale = np.where(np.arange(rows) % 2 == 0, np.float32(0.02), np.float32(1.0)).astype(np.float32)
    x = rng.standard_normal((rows, width), dtype=np.float32) * scale[:, None]
    channels = rng.choice(width, size=min(OUTLIER_CHANNELS, width), replace=False)
    carriers = np.flatnonzero(np.arange(rows) % 4 <= 1)
    factors = rng.uniform(100.0, 1000.0, size=(carriers.size, channels.size)).astype(np.float32)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=factors.shape)
    x[np.ix_(carriers, channels)] = signs * factors * scale[carriers, None]
    return x


def ramp(rows: int, width: int, seed: int) -> np.ndarray:
    i = np.arange(rows * width, dtype=np.int64)
    return (((i % 17) - 8) / 16).astype(np.float32).reshape(rows, width)


def upstream_ramp(rows: int, width: int, seed: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, rows * width, dtype=np.float32).reshape(rows, width)


def distinct_rows(rows: int, width: int, seed: int) -> np.ndarray:
    base = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    return np.stack([base * np.float32(10.0 ** (r - 2)) for r in range(rows)]).astype(np.float32)


def mixed_sign(rows: int, width: int, seed: int) -> np.ndarray:
    base = np.linspace(0.1, 1.0, width, dtype=np.float32)
    sign = np.tile(np.array([1.0, -1.0], dtype=np.float32), width // 2)
    return np.stack([-base, np.full(width, 1e-4, dtype=np.float32), base * sign, base]).astype(np.float32)


def constant(rows: int, width: int, seed: int) -> np.ndarray:
    return np.full((rows, width), 0.7, dtype=np.float32)


INPUTS: dict[str, Callable[[int, int, int], np.ndarray]] = {
    "normal": normal, "outliers": outliers, "ramp": ramp, "upstream_ramp": upstream_ramp,
    "distinct_rows": distinct_rows, "mixed_sign": mixed_sign, "constant": constant}


def input_problem(name: str, rows: int, width: int) -> str:
    """Why input `name` cannot have this shape ('' when it can)."""
    if name == "mixed_sign" and (rows != 4 or width % 2):
        return f"input mixed_sign has 4 rows of an even width, not rows={rows}, width={width}"
    if name == "distinct_rows" and rows > MAX_DISTINCT_ROWS:
        return f"input distinct_rows scales row r by 10^(r-2): at most {MAX_DISTINCT_ROWS} rows, not {rows}"
    return ""


def make_input(name: str, rows: int, width: int, seed: int) -> np.ndarray:
    return np.ascontiguousarray(INPUTS[name](rows, width, seed), dtype=np.float32)


def weight_pattern(name: str, width: int, seed: int) -> np.ndarray:
    """The norm weight named `name` (llama: a numpy draw of the same distribution as the recipe's torch draw)."""
    if name == "llama":
        return (1.0 + 0.5 * np.random.default_rng([seed, 0x6A17]).standard_normal(width)).astype(np.float32)
    if name == "linspace":
        return np.linspace(0.5, 1.5, width, dtype=np.float32)
    if name == "zeros_neg":
        w = np.linspace(-1.0, 1.0, width, dtype=np.float32)
        w[0] = 0.0
        w[width // 2] = 0.0
        return w
    if name == "upstream_width_1":
        return np.full(width, 1.3, dtype=np.float32)
    raise KeyError(name)
