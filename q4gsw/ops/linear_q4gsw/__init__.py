"""linear_q4gsw: y = x @ dequant(W).T with int4 weights quantized symmetrically per group of K.

ExecuTorch's et_vk.linear_q4gsw, as its WebGPU backend runs it (backends/webgpu/runtime/ops/
quantized_linear/). The constants' layout is in layout.py, the export recipe in recipe.py, the fp64
golden in golden.py, q4gsw's own kernels under kernels/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config
from q4gsw.ops.base import Binding, Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.linear_common import LinearDims, mkn
from q4gsw.ops.linear_q4gsw.golden import golden
from q4gsw.ops.linear_q4gsw.layout import (
    Q4GSW_OPERATOR,
    PackedLinear,
    as_u32_words,
    pack_int4,
    packed_from_delegate,
    tiny_problem,
    unpack_int4,
)

WEIGHT_FILE = "weight_packed.npy"
SCALES_FILE = "scales.npy"
MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100, H200: 2 GiB)


class LinearQ4gsw(LinearDims, Op):
    name = "linear_q4gsw"
    operator = Q4GSW_OPERATOR
    executorch_folder = "backends/webgpu/runtime/ops/quantized_linear"
    executorch_fixture_prefix = "q4gsw_"  # export_all_quantized_linear_models writes q4gsw_<config>.pte
    constant_files = (WEIGHT_FILE, SCALES_FILE)

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        M, K, N, group_size = mkn(config)
        problems = []
        if K % group_size:
            problems.append(ShapeProblem("K", f"K={K} is not a multiple of group_size={group_size}",
                                         "int4 per-group quantisation needs whole groups: change K or group_size"))
        if K % 8:
            problems.append(ShapeProblem("K", f"K={K} is not a multiple of 8",
                                         "packed weights are read as u32 words of 8 nibbles: use a multiple of 8"))
        if N % 8:
            problems.append(ShapeProblem("N", f"N={N} is not a multiple of 8",
                                         "ExecuTorch's WebGPU q4gsw requires N % 8 == 0: use a multiple of 8"))
        for key, size in (("M", 4 * M * K), ("M", 4 * M * N), ("N", N * K // 2)):
            if size > MAX_BINDING_BYTES:
                problems.append(ShapeProblem(key, f"{M}x{K}x{N} needs a {size / 2**30:.1f} GiB buffer binding",
                                             f"no adapter q4gsw supports binds more than "
                                             f"{MAX_BINDING_BYTES / 2**30:.0f} GiB: use a smaller shape"))
        return problems

    def flops(self, config: Config) -> int:
        M, K, N, _ = mkn(config)
        return 2 * M * K * N

    def bytes_moved(self, config: Config) -> int:
        M, K, N, group_size = mkn(config)
        weights, scales = N * K // 2, 4 * (K // group_size) * N
        return weights + scales + 4 * M * (K + N)

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.linear_q4gsw.recipe import export_pte

        return export_pte(config)

    def cross_check(self, pte: bytes, constants: PackedLinear, quantized: Any, config: Config) -> None:
        from q4gsw.ops.linear_q4gsw.recipe import cross_check

        cross_check(constants, quantized, config)

    def constants_from_pte(self, pte: bytes) -> PackedLinear:
        return packed_from_delegate(pte)

    def constants_to_files(self, constants: PackedLinear) -> dict[str, np.ndarray]:
        return {WEIGHT_FILE: np.ascontiguousarray(constants.weight_packed),
                SCALES_FILE: np.ascontiguousarray(constants.scales)}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> PackedLinear:
        return PackedLinear(weight_packed=files[WEIGHT_FILE], scales=files[SCALES_FILE],
                            group_size=config.dims["group_size"])

    def check_constants(self, constants: PackedLinear, config: Config) -> str:
        _, K, N, group_size = mkn(config)
        if constants.weight_packed.shape != (N, K // 2) or constants.group_size != group_size:
            return (f"holds N={constants.N}, K={constants.K}, group_size={constants.group_size}; config "
                    f"'{config.name}' has N={N}, K={K}, group_size={group_size}")
        return ""

    def synthetic_constants(self, config: Config, seed: int) -> PackedLinear:
        """Random int4 nibbles with the scales of a quantized nn.Linear (|w| < 1/sqrt(K), so scale ~ max|w| / 7.5):
        the magnitudes the matrix's tolerances were derived for."""
        _, K, N, group_size = mkn(config)
        rng = np.random.default_rng(seed)
        q = rng.integers(-8, 8, size=(N, K), dtype=np.int8)
        typical = 1.0 / (7.5 * np.sqrt(K))
        scales = (typical * (0.5 + 0.5 * rng.random((K // group_size, N)))).astype(np.float32)
        return PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group_size)

    def golden(self, x: np.ndarray, constants: PackedLinear,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden(x, constants, progress=progress)

    def cpu_reference(self, x: np.ndarray, constants: PackedLinear) -> np.ndarray:
        """fp32 dequantize (from the packed bytes) + x @ W.T."""
        w = unpack_int4(constants.weight_packed).astype(np.float32)
        w *= np.repeat(constants.scales[:, :constants.N], constants.group_size, axis=0).T
        return x @ w.T

    def torch_baseline(self, x: np.ndarray, constants: PackedLinear, golden: np.ndarray, repeats: int,
                       warmup_s: float = 0.0) -> Any:
        from q4gsw.ops.linear_q4gsw.torch_baseline import time_torch

        return time_torch(x, constants, golden, repeats, warmup_s)

    def error_model(self, x: np.ndarray, constants: PackedLinear) -> Any:
        from q4gsw.ops.error_model import error_model

        return error_model(x, packed=constants)

    def bindings(self, x: np.ndarray, constants: PackedLinear, chained: bool = False) -> Bindings:
        """ExecuTorch's q4gsw layout: b0 out, b1 x, b2 weight words, b3 scales, b4 bias (unused: zeros), b5 Params
        {M, N, K, K_packed, group_size, padded_N, has_bias, _pad}."""
        M, K = x.shape
        params = np.array([M, constants.N, K, K // 2, constants.group_size, constants.padded_N, 0, 0], dtype=np.uint32)
        return Bindings(output_index=0, output_shape=(M, constants.N), inputs=(
            Binding(1, np.ascontiguousarray(x, np.float32)),
            Binding(2, as_u32_words(constants.weight_packed)),
            Binding(3, np.ascontiguousarray(constants.scales, np.float32)),
            Binding(4, np.zeros(4, np.float32)),
            Binding(5, params, "uniform")))

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.linear_q4gsw.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        return tiny_problem()
