"""linear_qcs4w: y = x @ dequant(W).T with int4 weights quantized symmetrically per output channel.

ExecuTorch's et_vk.linear_qcs4w, as its WebGPU backend runs it (backends/webgpu/runtime/ops/linear_qcs4w/).
The constants' layout is in layout.py, the export recipe (ExecuTorch's own test helper) in recipe.py, the fp64
golden in golden.py, the reference kernel under kernels/, its mutants in mutants.py.

group_size: per-channel quantization has no groups along K, or rather one group spanning all of K. A config
must say so, group_size = K; anything else (say [defaults]' 32, inherited by accident) is a shape problem, so
the group size the tables show is the truth about the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config
from q4gsw.ops.base import Binding, Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.linear_common import LinearDims, mkn
from q4gsw.ops.linear_q4gsw.layout import as_u32_words
from q4gsw.ops.linear_qcs4w.golden import golden
from q4gsw.ops.linear_qcs4w.layout import (
    QCS4W_OPERATOR,
    OneGroupView,
    Qcs4wLinear,
    constants_from_delegate,
    pack_qcs4w,
    packed_width,
    unpack_qcs4w,
)

WEIGHT_FILE = "weight_packed.npy"
SCALES_FILE = "scales.npy"
MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100, H200: 2 GiB)


class LinearQcs4w(LinearDims, Op):
    name = "linear_qcs4w"
    operator = QCS4W_OPERATOR
    executorch_folder = "backends/webgpu/runtime/ops/linear_qcs4w"
    executorch_fixture_prefix = "qcs4w_"
    constant_files = (WEIGHT_FILE, SCALES_FILE)
    weight_names = ("torch_linear",)  # upstream's recipe: a seeded nn.Linear through the VulkanQuantizer

    def bench_dims(self, dims: Mapping[str, int]) -> dict[str, int]:
        return {**dims, "group_size": dims["K"]}  # per output channel: one group spans K, whatever bench was asked

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        M, K, N, group_size = mkn(config)
        problems = []
        if group_size != K:
            problems.append(ShapeProblem("group_size", f"group_size={group_size} but linear_qcs4w quantizes "
                                         "per output channel: one group spans all of K",
                                         f"write group_size = {K} (= K) in this config"))
        if K % 2:
            problems.append(ShapeProblem("K", f"K={K} is odd: ExecuTorch cannot export it (the meta function of "
                                         "et_vk.linear_qcs4w unpacks 2 * ceil(K/2) columns, and torch.export's shape "
                                         "check then fails in FuseQuantizedOpsTransform)",
                                         "use an even K (the WebGPU host itself would accept K_packed = ceil(K/2))"))
        if (N * packed_width(K)) % 4:
            problems.append(ShapeProblem("N", f"N * ceil(K/2) = {N * packed_width(K)} bytes is not a whole number of "
                                         "u32 words", "ExecuTorch's WebGPU host requires N * ceil(K/2) % 4 == 0: "
                                         "change N or K"))
        for key, size in (("M", 4 * M * K), ("M", 4 * M * N), ("N", N * packed_width(K))):
            if size > MAX_BINDING_BYTES:
                problems.append(ShapeProblem(key, f"{M}x{K}x{N} needs a {size / 2**30:.1f} GiB buffer binding",
                                             f"no adapter q4gsw supports binds more than "
                                             f"{MAX_BINDING_BYTES / 2**30:.0f} GiB: use a smaller shape"))
        return problems

    def shape_text(self, dims: Mapping[str, int]) -> str:
        return f"{dims['M']}x{dims['K']}x{dims['N']} per-channel"

    def flops(self, config: Config) -> int:
        M, K, N, _ = mkn(config)
        return 2 * M * K * N

    def bytes_moved(self, config: Config) -> int:
        M, K, N, _ = mkn(config)
        weights, scales = N * packed_width(K), 4 * N
        return weights + scales + 4 * M * (K + N)

    recipe = "VulkanQuantizer + torch.export + Vulkan lowering"

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.linear_qcs4w.recipe import export_pte

        return export_pte(config)

    def cross_check(self, pte: bytes, constants: Qcs4wLinear, quantized: Any, config: Config) -> None:
        from q4gsw.ops.linear_qcs4w.recipe import cross_check

        cross_check(constants, quantized, config)

    def constants_from_pte(self, pte: bytes) -> Qcs4wLinear:
        return constants_from_delegate(pte)

    def constants_to_files(self, constants: Qcs4wLinear) -> dict[str, np.ndarray]:
        return {WEIGHT_FILE: np.ascontiguousarray(constants.weight_packed),
                SCALES_FILE: np.ascontiguousarray(constants.scales)}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> Qcs4wLinear:
        return Qcs4wLinear(weight_packed=files[WEIGHT_FILE], scales=files[SCALES_FILE], K=config.dims["K"])

    def check_constants(self, constants: Qcs4wLinear, config: Config) -> str:
        _, K, N, _ = mkn(config)
        if (constants.weight_packed.shape != (N, packed_width(K)) or K != constants.K
                or constants.scales.shape != (N,)):
            return (f"holds N={constants.N}, K={constants.K} (weight {constants.weight_packed.shape}, scales "
                    f"{constants.scales.shape}); config '{config.name}' has N={N}, K={K}")
        return ""

    def synthetic_constants(self, config: Config, seed: int) -> Qcs4wLinear:
        """Random int4 nibbles with the scales of a quantized nn.Linear (|w| < 1/sqrt(K), scale = max|w| / 7.5)."""
        _, K, N, _ = mkn(config)
        rng = np.random.default_rng(seed)
        q = rng.integers(-8, 8, size=(N, K), dtype=np.int8)
        typical = 1.0 / (7.5 * np.sqrt(K))
        scales = (typical * (0.5 + 0.5 * rng.random(N))).astype(np.float32)
        return Qcs4wLinear(weight_packed=pack_qcs4w(q), scales=scales, K=K)

    def golden(self, x: np.ndarray, constants: Qcs4wLinear,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden(x, constants, progress=progress)

    def cpu_reference(self, x: np.ndarray, constants: Qcs4wLinear) -> np.ndarray:
        """fp32 dequantize (from the packed bytes) + x @ W.T, as the converted eager module computes it."""
        w = unpack_qcs4w(constants.weight_packed, constants.K).astype(np.float32)
        w *= constants.scales[:, None]
        return x @ w.T

    def error_model(self, x: np.ndarray, constants: Qcs4wLinear) -> Any:
        from q4gsw.ops.error_model import error_model

        return error_model(x, packed=OneGroupView(constants))

    def bindings(self, x: np.ndarray, constants: Qcs4wLinear, chained: bool = False) -> Bindings:
        """ExecuTorch's qcs4w layout: b0 out, b1 x, b2 weight bytes as u32 words, b3 scales [N], b4 Params
        {M, N, K, K_packed}."""
        M, K = x.shape
        if K != constants.K:
            raise ValueError(f"input has K={K} but the constants hold K={constants.K}")
        params = np.array([M, constants.N, K, constants.K_packed], dtype=np.uint32)
        return Bindings(output_index=0, output_shape=(M, constants.N), inputs=(
            Binding(1, np.ascontiguousarray(x, np.float32)),
            Binding(2, as_u32_words(constants.weight_packed)),
            Binding(3, np.ascontiguousarray(constants.scales, np.float32)),
            Binding(4, params, "uniform")))

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.linear_qcs4w.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        tiny = Qcs4wLinear(weight_packed=pack_qcs4w(np.zeros((4, 8), dtype=np.int64)),
                           scales=np.ones(4, dtype=np.float32), K=8)
        return np.zeros((1, 8), dtype=np.float32), tiny
