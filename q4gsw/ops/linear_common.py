"""What every linear op here shares: y[M, N] = x[M, K] @ dequant(W[N, K]).T with int4 weights in groups of K.

The dims M, K, N, group_size (and K_packed = K // 2: two int4 nibbles per byte), the activation inputs x [M, K],
the "MxKxN gs=32" shape text and a bench bound grown like the fp32 error of a K-long dot product. A linear op
mixes `LinearDims` in before `Op`; nothing outside the linear ops assumes any of this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance

LINEAR_DIMS = (
    Dim("M", "rows of the activation x (tokens)"),
    Dim("K", "the reduction: x's columns, the weight's columns"),
    Dim("N", "output columns: the weight's rows"),
    Dim("group_size", "weights per int4 scale along K"),
)


def mkn(config: Config) -> tuple[int, int, int, int]:
    """A linear config's (M, K, N, group_size)."""
    d = config.dims
    return d["M"], d["K"], d["N"], d["group_size"]


class LinearDims:
    """The Op methods a linear with int4 weights answers alike (mixed in before q4gsw.ops.base.Op)."""

    dims = LINEAR_DIMS
    bench_shapes = ("1x2048x2048", "1x2048x8192", "1x8192x2048", "256x2048x2048", "1024x2048x512")

    def derived_names(self, dims: Mapping[str, int]) -> dict[str, int]:
        return {"K_packed": dims["K"] // 2}  # bytes per weight row: two int4 nibbles a byte

    def shape_text(self, dims: Mapping[str, int]) -> str:
        return f"{dims['M']}x{dims['K']}x{dims['N']} gs={dims['group_size']}"

    def dims_from_v2(self, shape: Mapping[str, int]) -> dict[str, int] | None:
        return {d.name: int(shape[d.name]) for d in LINEAR_DIMS}  # schema 2 spoke a linear's words already

    def make_input(self, name: str, config: Config) -> np.ndarray:
        """An activation x [M, K] from q4gsw.ops.inputs."""
        from q4gsw.ops import inputs

        return inputs.make_input(name, config.dims["M"], config.dims["K"], config.weight_seed)

    def output_shape(self, config: Config) -> tuple[int, ...]:
        return (config.dims["M"], config.dims["N"])

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        """matrix.toml's K = 2048 linear bound (atol 1e-5, rtol 1e-4), grown like the expected fp32 error, sqrt(K)."""
        grow = max(1.0, math.sqrt(dims["K"] / 2048))
        return Tolerance(atol=1e-5 * grow, rtol=1e-4 * grow, justification="bench sanity check", source="bench")

    @staticmethod
    def parse_shorthand(text: str) -> dict[str, int] | None:
        """bench's linear shorthand MxKxN (e.g. 1x2048x2048) as dims; None when `text` is not that form."""
        parts = text.lower().split("x")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
            return None
        return dict(zip(("M", "K", "N"), map(int, parts), strict=True))
