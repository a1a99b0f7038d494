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


# --- Edge weight patterns ----------------------------------------------------------------------
# The symmetric int4 quantizer of the export recipes (q4gsw/ops/*/recipe.py) quantizes a group as
#     scale = max|w| / 7.5 (clamped below at float32's smallest normal, 1.1755e-38),
#     q = clamp(round_half_even(w / scale), -8, 7).
# A group holding -7.5*s and +7.5*s with s = 2**e therefore gets scale = s exactly and the nibbles
# -8 (-7.5 rounds half-to-even to -8) and 7 (7.5 rounds to 8, clamped to 7); every other element is
# an exact multiple q*s, q in [-7, 7], so it quantizes to q with no rounding at all. An all-zero group
# gets scale 1.1755e-38 and all-zero values (nibble 8). tests/test_inputs.py checks this on a real
# export, through the .pte's delegate.

EDGE_LEVEL = np.float32(7.5)  # max|w| / scale for a group that hits both int4 extremes


def _group_exponents(N: int, G: int, K: int, rng: np.random.Generator,
                     exponent_range: tuple[int, int] | None) -> np.ndarray:
    """Per (row, group) power-of-two scale exponents, int [N, G], varying 4x to 8x between groups so a
    wrong scale index changes the result. Default range: nn.Linear's magnitude (max|w| ~ 1/sqrt(K))."""
    if exponent_range is None:
        base = int(np.floor(np.log2(1.0 / np.sqrt(K) / float(EDGE_LEVEL))))
        exponent_range = (base - 2, base)
    return rng.integers(exponent_range[0], exponent_range[1] + 1, size=(N, G))


def _edge_pattern(N: int, K: int, group_size: int, seed: int,
                  exponent_range: tuple[int, int] | None) -> np.ndarray:
    rng = np.random.default_rng([seed, 0xED6E])
    G = K // group_size
    levels = rng.integers(-7, 8, size=(N, G, group_size)).astype(np.float32)
    saturated = rng.choice(np.array([-EDGE_LEVEL, EDGE_LEVEL], dtype=np.float32), size=(N, G, group_size))
    n_idx, g_idx = np.meshgrid(np.arange(N), np.arange(G), indexing="ij")
    is_saturated = (n_idx + 3 * g_idx) % 7 == 3
    levels[is_saturated] = saturated[is_saturated]
    # Both extremes in every group, at seeded distinct positions.
    first = rng.integers(0, group_size, size=(N, G))
    second = (first + 1 + rng.integers(0, group_size - 1, size=(N, G))) % group_size
    np.put_along_axis(levels, first[..., None], -EDGE_LEVEL, axis=2)
    np.put_along_axis(levels, second[..., None], EDGE_LEVEL, axis=2)
    levels[(2 * n_idx + g_idx) % 5 == 4] = 0.0
    scales = np.ldexp(np.float32(1.0), _group_exponents(N, G, K, rng, exponent_range)).astype(np.float32)
    return (levels * scales[..., None]).reshape(N, K).astype(np.float32)


def int4_edges(N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    """Groups that hit the int4 edges, deterministic in seed, at nn.Linear-like magnitude.

    Every non-zero group contains -7.5*s and +7.5*s (nibbles -8 and 7) at seeded positions, the rest
    random exact levels q*s; every 5th group (staggered by row) is all zero (scale 1.18e-38, nibble 8);
    every 7th group is saturated (all nibbles -8 or 7); s = 2**e varies 4x between groups.
    """
    return _edge_pattern(N, K, group_size, seed, None)


def int4_tiny_scales(N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    """int4_edges with scales 2**-24 .. 2**-21: products stay normal fp32 numbers (|x*q*s| >= ~1e-9 for
    |x| >= 1/16) but fall below fp16's normal range (6.1e-5), so an fp16 path flushes or loses them."""
    return _edge_pattern(N, K, group_size, seed, (-24, -21))


def int4_huge_scales(N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    """int4_edges with scales 2**8 .. 2**11: |w| up to 15360 and |y| ~ 1e5, beyond fp16's 65504."""
    return _edge_pattern(N, K, group_size, seed, (8, 11))


def int4_saturated(N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    """Every weight at an int4 extreme (-8 or 7 after quantization): the largest sum|x*w| for given
    scales, i.e. the worst case for accumulation error, and every nibble 0x0 or 0xF."""
    rng = np.random.default_rng([seed, 0x5A7])
    G = K // group_size
    levels = rng.choice(np.array([-EDGE_LEVEL, EDGE_LEVEL], dtype=np.float32), size=(N, G, group_size))
    scales = np.ldexp(np.float32(1.0), _group_exponents(N, G, K, rng, None)).astype(np.float32)
    return (levels * scales[..., None]).reshape(N, K).astype(np.float32)


def torch_linear(N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    """ExecuTorch's own fixture: `torch.manual_seed(seed); nn.Linear(K, N, bias=False)` (needs torch),
    exactly as executorch/backends/webgpu/test/ops/test_quantized_linear.py builds its models, so a
    q4gsw fixture and golden are ExecuTorch's for the same shape and seed."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Linear(K, N, bias=False).weight.detach().numpy().copy()


WEIGHTS: dict[str, Callable[[int, int, int, int], np.ndarray]] = {
    "torch_linear": torch_linear, "linear_init": linear_init, "int4_edges": int4_edges,
    "int4_tiny_scales": int4_tiny_scales, "int4_huge_scales": int4_huge_scales, "int4_saturated": int4_saturated}


def make_weights(name: str, N: int, K: int, group_size: int, seed: int) -> np.ndarray:
    return WEIGHTS[name](N, K, group_size, seed)
