"""rms_norm: y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, Llama's RMSNorm.

ExecuTorch's et_vk.rms_norm (the Vulkan partitioner's rms_norm pattern), as its WebGPU backend runs it
(backends/webgpu/runtime/ops/rms_norm/). Dims: rows (tokens: decode 1, prefill S; the host flattens every
leading dim into rows) and width (the hidden size, 2048 for Llama-3.2-1B). x is [rows, width]; the constants
are the norm weight [width] and eps, read from the .pte's delegate (layout.py). `weights` names the module
(inputs.py): llama (the Llama example's RMSNorm, eps 1e-5, seeded weight) or one of ExecuTorch's own test cases
(eps 1e-6): the eps comes with the module, so it is not a dim. The recipe is in recipe.py, the fp64 golden and the
error model in golden.py, the reference kernel under kernels/, its mutants in mutants.py.

Bindings (ExecuTorch's RmsNorm.cpp): b0 y (read_write f32), b1 x, b2 weight, b3 uniform Params {num_rows,
row_width, epsilon: f32, _pad}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance
from q4gsw.ops.base import Binding, Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.rms_norm import golden as golden_module
from q4gsw.ops.rms_norm.inputs import INPUTS, WEIGHT_EPS, input_problem, make_input, weight_pattern
from q4gsw.ops.rms_norm.layout import RMS_NORM_OPERATOR, NormWeights, constants_from_delegate

WEIGHT_FILE = "weight.npy"
EPS_FILE = "eps.npy"
MAX_ROWS = 65535  # ExecuTorch's host dispatches one workgroup per row, 1-D, and refuses more than the limit
MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100, H200: 2 GiB)


class RmsNorm(Op):
    name = "rms_norm"
    operator = RMS_NORM_OPERATOR
    executorch_folder = "backends/webgpu/runtime/ops/rms_norm"
    dims = (Dim("rows", "rows normalized independently (tokens: 1 at decode, S at prefill)"),
            Dim("width", "elements of a row (the hidden size)"))
    constant_files = (WEIGHT_FILE, EPS_FILE)
    input_names = tuple(INPUTS)
    weight_names = tuple(WEIGHT_EPS)
    bench_shapes = ("rows=1,width=2048", "rows=512,width=2048", "rows=4096,width=2048")

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        rows, width = config.dims["rows"], config.dims["width"]
        problems = []
        if rows > MAX_ROWS:
            problems.append(ShapeProblem("rows", f"rows={rows} is over {MAX_ROWS}: ExecuTorch's host dispatches one "
                                         "workgroup per row in one dimension", f"use at most {MAX_ROWS} rows"))
        if 4 * rows * width > MAX_BINDING_BYTES:
            problems.append(ShapeProblem("rows", f"{rows}x{width} needs a {4 * rows * width / 2**30:.1f} GiB "
                                         "binding", "no adapter q4gsw supports binds more than 2 GiB: fewer rows"))
        for name in config.inputs:
            why = input_problem(name, rows, width)
            if why:
                problems.append(ShapeProblem("inputs", why, f"drop {name} from this config's inputs or change "
                                             "its shape"))
        return problems

    def make_input(self, name: str, config: Config) -> np.ndarray:
        return make_input(name, config.dims["rows"], config.dims["width"], config.weight_seed)

    def output_shape(self, config: Config) -> tuple[int, ...]:
        return (config.dims["rows"], config.dims["width"])

    def flops(self, config: Config) -> int:
        return 4 * config.dims["rows"] * config.dims["width"]  # square, add; two products

    def bytes_moved(self, config: Config) -> int:
        rows, width = config.dims["rows"], config.dims["width"]
        return 4 * (2 * rows * width + width)

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        return Tolerance(atol=1e-30, rtol=1e-4, justification="bench sanity check: ~10x the configs rtol",
                         source="bench")

    recipe = "norm module + torch.export + Vulkan lowering (rms_norm pattern)"

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.rms_norm.recipe import export_pte

        return export_pte(config)

    def cross_check(self, pte: bytes, constants: NormWeights, quantized: Any, config: Config) -> None:
        from q4gsw.ops.rms_norm.recipe import cross_check

        cross_check(constants, quantized, config)

    def constants_from_pte(self, pte: bytes) -> NormWeights:
        return constants_from_delegate(pte)

    def constants_to_files(self, constants: NormWeights) -> dict[str, np.ndarray]:
        return {WEIGHT_FILE: np.ascontiguousarray(constants.weight, np.float32),
                EPS_FILE: np.array([constants.eps], dtype=np.float64)}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> NormWeights:
        return NormWeights(weight=np.asarray(files[WEIGHT_FILE], np.float32), eps=float(files[EPS_FILE][0]))

    def synthetic_constants(self, config: Config, seed: int) -> NormWeights:
        weights = config.weights if config.weights in WEIGHT_EPS else "llama"
        return NormWeights(weight=weight_pattern(weights, config.dims["width"], seed), eps=WEIGHT_EPS[weights])

    def golden(self, x: np.ndarray, constants: NormWeights,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden_module.golden(x, constants, progress)

    def cpu_reference(self, x: np.ndarray, constants: NormWeights) -> np.ndarray:
        return golden_module.cpu_reference(x, constants)

    def error_model(self, x: np.ndarray, constants: NormWeights) -> Any:
        return golden_module.error_model(x, constants)

    def bindings(self, x: np.ndarray, constants: NormWeights, chained: bool = False) -> Bindings:
        rows, width = x.shape
        if width != constants.width:
            raise ValueError(f"input has width {width} but the norm weight has {constants.width} elements")
        eps_bits = int(np.array([constants.eps], dtype=np.float32).view(np.uint32)[0])
        params = np.array([rows, width, eps_bits, 0], dtype=np.uint32)
        return Bindings(output_index=0, output_shape=(rows, width), inputs=(
            Binding(1, np.ascontiguousarray(x, np.float32)),
            Binding(2, np.ascontiguousarray(constants.weight, np.float32)),
            Binding(3, params, "uniform")))

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.rms_norm.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        return np.ones((1, 4), np.float32), NormWeights(weight=np.ones(4, np.float32), eps=1e-5)
