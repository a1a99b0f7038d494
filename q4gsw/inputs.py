"""Deterministic input activations and fp32 weight patterns, named in matrix.toml.

Inputs need only numpy, so a machine without the export stack regenerates them bit-exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def ramp(M: int, K: int, seed: int) -> np.ndarray:
    """The seed suite's input: x[i] = ((i % 17) - 8) / 16 over the flattened M*K input (exact in fp32)."""
    i = np.arange(M * K, dtype=np.int64)
    return (((i % 17) - 8) / 16).astype(np.float32).reshape(M, K)


def normal(M: int, K: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0x1A7E])
    return rng.standard_normal((M, K), dtype=np.float32)


def outliers(M: int, K: int, seed: int) -> np.ndarray:
    """Mostly small activations plus ~0.5% large-magnitude ones, as LLM activations have."""
    rng = np.random.default_rng([seed, 0x0071])
    x = rng.standard_normal((M, K), dtype=np.float32) * np.float32(0.1)
    mask = rng.random((M, K)) < 0.005
    x[mask] = rng.choice(np.array([-60.0, -25.0, 25.0, 60.0], dtype=np.float32), size=int(mask.sum()))
    return x


INPUTS: dict[str, Callable[[int, int, int], np.ndarray]] = {"ramp": ramp, "normal": normal, "outliers": outliers}


def make_input(name: str, M: int, K: int, seed: int) -> np.ndarray:
    return np.ascontiguousarray(INPUTS[name](M, K, seed), dtype=np.float32)


def linear_init(N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    """Like nn.Linear's default init: uniform in (-1/sqrt(K), 1/sqrt(K))."""
    rng = np.random.default_rng([seed, 0x11EA])
    bound = np.float32(1.0 / np.sqrt(K))
    w = rng.random((N, K), dtype=np.float32)
    w *= np.float32(2.0) * bound
    w -= bound
    return w


WEIGHTS: dict[str, Callable[[int, int, int, int], np.ndarray]] = {"linear_init": linear_init}


def make_weights(name: str, N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    return WEIGHTS[name](N, K, group_size, seed)
