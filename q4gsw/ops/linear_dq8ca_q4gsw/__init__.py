"""linear_dq8ca_q4gsw: the 8da4w linear, dynamic per-row int8 activations times int4 group-symmetric weights.

ExecuTorch's et_vk.linear_dq8ca_q4gsw as its WebGPU backend runs it (backends/webgpu/runtime/ops/
linear_dq8ca_q4gsw/), after torchao.choose_qparams_affine (backends/webgpu/runtime/ops/choose_qparams_affine/)
computed each row's scale s[m] and int8 zero point z[m]:

    y[m, n] = s[m] * sum_k (xq[m, k] - z[m]) * q[n, k] * scales[k // group_size, n],
    xq = clamp(round(x / s) + z, -128, 127).

The weights are linear_q4gsw's packing (its layout.py: PackedLinear, read from the delegate at this op's argument
positions). The qparams are torchao's (qparams.py), the golden golden.py, the error model rounding.py, the export
recipe recipe.py, op-specific inputs inputs.py, q4gsw's reference kernels kernels/ and the mutants mutants.py.
A kernel runs either given the exact qparams (bindings(chained=False)) or after a choose_qparams kernel
(its `before` in matrix.toml: before_bindings, then bindings(chained=True)), as the runtime chains them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops.base import Binding, Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.linear_common import LinearDims, mkn
from q4gsw.ops.linear_dq8ca_q4gsw.qparams import QUANT_MAX, QUANT_MIN, choose_qparams, torchao_codes
from q4gsw.ops.linear_dq8ca_q4gsw.recipe import DQ8CA_CALL, DQ8CA_OPERATOR, QPARAMS_OPERATOR
from q4gsw.ops.linear_q4gsw import LinearQ4gsw
from q4gsw.ops.linear_q4gsw.layout import (
    PackedLinear,
    as_u32_words,
    packed_from_delegate,
    tiny_problem,
)

BENCH_MODEL_SHAPE = (64, 64)  # rows and columns the bench bound's model is computed on, then grown to 2^36 outputs
MOST_BENCH_OUTPUTS = 2**36


@functools.cache
def _bench_bound(K: int) -> tuple[float, float]:
    """(atol, rtol) of bench_tolerance: the model's estimate without the chained-scale term grows like
    sqrt(ln(outputs)) (the expected maximum over the outputs); that term is relative, SCALE_RELATIVE |y|."""
    from q4gsw.ops.linear_dq8ca_q4gsw.inputs import untied
    from q4gsw.ops.linear_dq8ca_q4gsw.rounding import SCALE_RELATIVE, dq8ca_error_model

    M, N = BENCH_MODEL_SHAPE
    model_config = Config(name="bench-model", dims={"M": M, "K": K, "N": N, "group_size": 32}, tier="optional",
                          suite="bench", inputs=("untied",), weights="random", weight_seed=0, timeout_s=1.0,
                          tolerance=Tolerance(0.0, 0.0))
    constants = LinearQ4gsw().synthetic_constants(model_config, 0)
    model = dq8ca_error_model(untied(M, K, 0), constants)
    fp32 = model.est - model.scaled  # the fp32 estimate (and flips, none on untied rows)
    grow = math.sqrt(math.log(MOST_BENCH_OUTPUTS) / math.log(M * N))
    return 3 * float(fp32.max()) * grow, 3 * SCALE_RELATIVE


class LinearDq8caQ4gsw(LinearDims, Op):
    name = "linear_dq8ca_q4gsw"
    operator = DQ8CA_OPERATOR
    also_runs = (QPARAMS_OPERATOR,)  # its chain: choose_qparams_affine's per-row qparams, then the linear
    executorch_folder = "backends/webgpu/runtime/ops/linear_dq8ca_q4gsw"
    executorch_fixture_prefix = "dq8ca_"  # no ExecuTorch export folder writes this op's .pte files (yet)
    constant_files = LinearQ4gsw.constant_files
    input_names = ("ramp", "normal", "outliers", "row_offsets", "flat_rows", "tiny_rows", "untied")
    synthetic_input = "untied"  # no legitimate tie flip: bench_tolerance is the fp32 model's

    _weights = LinearQ4gsw()  # the same packed int4 weights: their shape rules, files and synthetic constants

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        return self._weights.shape_problems(config)

    def make_input(self, name: str, config: Config) -> np.ndarray:
        from q4gsw.ops.linear_dq8ca_q4gsw.inputs import INPUTS

        if name in INPUTS:
            x = INPUTS[name](config.dims["M"], config.dims["K"], config.weight_seed)
            return np.ascontiguousarray(x, dtype=np.float32)
        return super().make_input(name, config)

    def flops(self, config: Config) -> int:
        M, K, N, _ = mkn(config)
        return 2 * M * K * N

    def bytes_moved(self, config: Config) -> int:
        # + the per-row scale (f32) and zero point (int8)
        return self._weights.bytes_moved(config) + 5 * config.dims["M"]

    recipe = "8da4w quantize + torch.export + Vulkan lowering"

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.linear_dq8ca_q4gsw.recipe import export_pte

        return export_pte(config)

    def cross_check(self, pte: bytes, constants: PackedLinear, quantized: Any, config: Config) -> None:
        from q4gsw.ops.linear_dq8ca_q4gsw.recipe import check_qparams_call, cross_check

        check_qparams_call(pte, config)
        cross_check(constants, quantized, config)

    def constants_from_pte(self, pte: bytes) -> PackedLinear:
        return packed_from_delegate(pte, DQ8CA_CALL)

    def constants_to_files(self, constants: PackedLinear) -> dict[str, np.ndarray]:
        return self._weights.constants_to_files(constants)

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> PackedLinear:
        return self._weights.constants_from_files(files, config)

    def check_constants(self, constants: PackedLinear, config: Config) -> str:
        return self._weights.check_constants(constants, config)

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        """From the error model (rounding.py) of bench's problem at this K: its `untied` input has no tie flip, so
        atol = 3x the model's fp32 estimate (audit's TIGHT margin), grown to 2^36 outputs, and rtol = 3x the chained
        scale's relative effect (6u); one wrong nibble stays far outside it (a flat 5e-3 was 170x looser)."""
        atol, rtol = _bench_bound(dims["K"])
        return Tolerance(atol=atol, rtol=rtol, justification="bench sanity check: rounding.py's model x 3",
                         source="bench")

    def synthetic_constants(self, config: Config, seed: int) -> PackedLinear:
        return self._weights.synthetic_constants(config, seed)

    def golden(self, x: np.ndarray, constants: PackedLinear,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        from q4gsw.ops.linear_dq8ca_q4gsw.golden import golden

        return golden(x, constants, progress=progress)

    def cpu_reference(self, x: np.ndarray, constants: PackedLinear) -> np.ndarray:
        """As torchao's eager module: fp32 fake-quantized x (torchao's codes) times the fp32-dequantized weights."""
        qparams = choose_qparams(x)
        dequantized = (torchao_codes(x, qparams).astype(np.float32) * qparams.scale[:, None]).astype(np.float32)
        return self._weights.cpu_reference(dequantized, constants)

    def error_model(self, x: np.ndarray, constants: PackedLinear) -> Any:
        """The chained path's model (rounding.py): fp32 rounding, tie flips and the GPU-computed qparams."""
        from q4gsw.ops.linear_dq8ca_q4gsw.rounding import dq8ca_error_model

        return dq8ca_error_model(x, constants, chained=True)

    def bindings(self, x: np.ndarray, constants: PackedLinear, chained: bool = False) -> Bindings:
        """ExecuTorch's layout: b0 out, b1 x, b2 input_scale f32[M], b3 input_zp (int8[M] as ceil(M/4) u32 words),
        b4 weight words, b5 scales, b6 bias (unused: 4 zero bytes), b7 Params {M, N, K, K_packed, group_size,
        padded_N, has_bias, _pad}. chained: b2/b3 are what the `before` kernel wrote (before_bindings' buffers)."""
        M, K = x.shape
        params = np.array([M, constants.N, K, K // 2, constants.group_size, constants.padded_N, 0, 0], dtype=np.uint32)
        if chained:
            scale = Binding(2, np.zeros(M, np.float32), shared="input_scale")
            zero_point = Binding(3, np.zeros(-(-M // 4), np.uint32), shared="input_zp")
        else:
            qparams = choose_qparams(x)
            scale, zero_point = Binding(2, qparams.scale), Binding(3, qparams.zero_point_words())
        return Bindings(output_index=0, output_shape=(M, constants.N), inputs=(
            Binding(1, np.ascontiguousarray(x, np.float32), shared="input"), scale, zero_point,
            Binding(4, as_u32_words(constants.weight_packed)),
            Binding(5, np.ascontiguousarray(constants.scales, np.float32)),
            Binding(6, np.zeros(1, np.float32)),
            Binding(7, params, "uniform")))

    def before_bindings(self, x: np.ndarray, constants: PackedLinear) -> Bindings:
        """ExecuTorch's choose_qparams_affine layout: b0 x, b1 scales (written), b2 zero points (written, u32
        words), b3 Params {num_rows u32, reduce_size u32, quant_min i32, quant_max i32}."""
        M, K = x.shape
        return Bindings(output_index=None, output_shape=(), inputs=(
            Binding(0, np.ascontiguousarray(x, np.float32), shared="input"),
            Binding(1, np.zeros(M, np.float32), kind="storage", shared="input_scale"),
            Binding(2, np.zeros(-(-M // 4), np.uint32), kind="storage", shared="input_zp"),
            Binding(3, np.array([M, K, QUANT_MIN, QUANT_MAX], dtype=np.int32), "uniform")))

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.linear_dq8ca_q4gsw.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        return tiny_problem()
