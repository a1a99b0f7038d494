"""The a-priori fp32 error model of a quantized linear layer (docs/error-model.md), for the tolerance audit.

Per output y[m,n] = sum_k x[m,k] * w[n,k] of K terms, from the config's real quantized weights and input:
S = sum_k |x||w| (w dequantized exactly, in fp64); the deterministic bound gamma_{K+1} S (Higham), the
probabilistic bound of Higham & Mary (2019), the statistical estimate of a sequential fp32 kernel's largest
error, and `step`, what one nibble off by one changes. audit.py sets them beside each config's tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

U = 2.0**-24  # unit roundoff of fp32
DELTA = 1e-3  # failure probability of the probabilistic bound, over all outputs of a config
CHUNK_ELEMENTS = 8 * 2**20  # fp64 elements held at once (64 MiB)


def gamma(n: int, u: float = U) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative bound of n successive roundings."""
    if n * u >= 1:
        return math.inf
    return n * u / (1 - n * u)


def hm_gamma(n: int, lam: float, u: float = U) -> float:
    """Higham & Mary's probabilistic gamma~_n(lambda) = exp(lambda sqrt(n) u + n u^2 / (1 - u)) - 1."""
    return math.expm1(lam * math.sqrt(n) * u + n * u * u / (1 - u))


def hm_lambda(n: int, outputs: int, delta: float = DELTA) -> float:
    """lambda with union-bound failure probability <= delta over `outputs` dot products of length n."""
    return math.sqrt(2 * math.log(2 * n * max(outputs, 1) / delta))


@dataclass
class ErrorModel:
    """Per-output error model for y = x @ w.T in fp32 (arrays are [M, N] float64)."""

    S: np.ndarray  # sum_k |x w|
    sigma: np.ndarray  # u/sqrt(3) * sqrt(sum P_j^2 + 2 sum t_j^2), sequential order
    step: np.ndarray  # max_k |x_k| s_{n,g(k)}
    K: int

    @property
    def outputs(self) -> int:
        return int(self.S.size)

    @property
    def worst(self) -> np.ndarray:
        return gamma(self.K + 1) * self.S

    @property
    def hm_bound(self) -> np.ndarray:
        return hm_gamma(self.K + 1, hm_lambda(self.K + 1, self.outputs)) * self.S

    @property
    def est(self) -> np.ndarray:
        return math.sqrt(2 * math.log(max(self.outputs, 2))) * self.sigma


class GroupedWeights(Protocol):
    """What error_model reads of a dot-product op's constants: N weight rows of K, dequantized exactly, and the
    scales [G, >= N] of groups of `group_size` along K (an op whose constants are laid out otherwise gives a view of
    them in these terms: linear_qcs4w's OneGroupView, one group spanning K)."""

    @property
    def N(self) -> int: ...

    @property
    def group_size(self) -> int: ...

    @property
    def scales(self) -> np.ndarray: ...

    def dequantized_rows(self, n0: int, n1: int) -> np.ndarray: ...


def error_model(x: np.ndarray, w: np.ndarray | None = None, scales: np.ndarray | None = None,
                group_size: int | None = None, packed: GroupedWeights | None = None) -> ErrorModel:
    """The model for input x [M, K] and either dense weights w [N, K] (+ per-group scales [G, N] for
    `step`) or an op's grouped weights (GroupedWeights). Identical rows of x (the ramp repeats every 17 rows)
    are done once. An op answers `audit` through Op.error_model, using this for its dot products or its own."""
    x = np.asarray(x, dtype=np.float64)
    K = x.shape[1]
    if packed is not None:
        N, group_size = packed.N, packed.group_size
        scales = np.asarray(packed.scales[:, :N], dtype=np.float64)

        def rows(n0: int, n1: int) -> np.ndarray:
            return packed.dequantized_rows(n0, n1)
    else:
        assert w is not None
        w = np.asarray(w, dtype=np.float64)
        N = w.shape[0]

        def rows(n0: int, n1: int) -> np.ndarray:
            return w[n0:n1]
    unique, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    R = unique.shape[0]
    ax = np.abs(unique)
    S = np.empty((R, N))
    sigma2 = np.empty((R, N))
    n_chunk = max(1, CHUNK_ELEMENTS // max(1, R * K))
    for n0 in range(0, N, n_chunk):
        n1 = min(N, n0 + n_chunk)
        wc = rows(n0, n1)  # [n, K]
        S[:, n0:n1] = ax @ np.abs(wc).T
        terms = unique[:, None, :] * wc[None, :, :]  # [R, n, K]
        partial = np.cumsum(terms, axis=2)
        sigma2[:, n0:n1] = (np.einsum("rnk,rnk->rn", partial, partial) + 2 * np.einsum("rnk,rnk->rn", terms, terms))
        del terms, partial
    sigma = U / math.sqrt(3) * np.sqrt(sigma2)
    if scales is not None and group_size:
        G = K // group_size
        xg = ax.reshape(R, G, group_size).max(axis=2)  # [R, G]
        step = np.zeros((R, N))
        g_chunk = max(1, CHUNK_ELEMENTS // max(1, R * N))
        for g0 in range(0, G, g_chunk):
            g1 = min(G, g0 + g_chunk)
            step = np.maximum(step, (xg[:, g0:g1, None] * np.abs(scales[g0:g1])[None]).max(axis=1))
    else:
        step = np.full((R, N), np.nan)
    return ErrorModel(S=S[inverse], sigma=sigma[inverse], step=step[inverse], K=K)
