"""embedding_q4gsw's inputs: int32 token indices [M] into a table of K rows, named in matrix.toml's `inputs`.

numpy only and seeded, so a machine without the export stack regenerates them bit-exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def every_row(M: int, K: int, seed: int) -> np.ndarray:
    """Seeded permutations of 0..K-1, one after another, cut to M: with M >= K every table row is gathered (a
    wrong row stride or row offset anywhere in the table shows), in an order unrelated to the row number."""
    rng = np.random.default_rng([seed, 0xE3B0])
    rounds = -(-M // K)
    return np.concatenate([rng.permutation(K) for _ in range(rounds)])[:M]


def edges(M: int, K: int, seed: int) -> np.ndarray:
    """The rows where gathers go wrong first: the last row (first, so M = 1 reads it), the first, the last again
    (a repeated index), K-2, odd rows, adjacent rows in both orders and the middle of the table; then seeded
    rows with repeats, cut to M."""
    middle = K // 2
    special = [K - 1, 0, K - 1, 1, K - 2, 3, 2, middle, middle + 1, middle - 1, K - 3, 5, 0, K - 1]
    rng = np.random.default_rng([seed, 0xED6E5])
    rest = rng.integers(0, K, size=max(0, M - len(special)))
    return np.concatenate([np.asarray(special, dtype=np.int64) % K, rest])[:M]


def upstream(M: int, K: int, seed: int) -> np.ndarray:
    """ExecuTorch's own indices (test_embedding_q4gsw.py: [1, 5, vocab-1, 0]), repeated to M."""
    base = np.asarray([1, 5, K - 1, 0], dtype=np.int64) % K
    return np.resize(base, M)


INDICES: dict[str, Callable[[int, int, int], np.ndarray]] = {"every_row": every_row, "edges": edges,
                                                             "upstream": upstream}


def make_indices(name: str, M: int, K: int, seed: int) -> np.ndarray:
    return np.ascontiguousarray(INDICES[name](M, K, seed), dtype=np.int32)
