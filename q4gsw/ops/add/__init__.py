"""add: out = a + alpha * b, the residual add of a decoder layer (b broadcast where one of its dims is 1).

ExecuTorch's aten.add.Tensor as its WebGPU backend runs it: add/BinaryOp.cpp dispatches add/binary_add.wgsl (an
elementwise path when every operand has out's sizes, a broadcast path otherwise). A config's shape in this op's
words (its `dims`, matrix.toml keys):
  rows    = the rows of a and of the output (tokens: 1 for a decode step, S for a prefill),
  width   = the row width (2048, Llama-3.2-1B's hidden size),
  b_rows  = b's rows: rows, or 1 (b broadcast down the rows),
  b_width = b's width: width, or 1 (b broadcast along a row).
The engine's one input array packs both operands: x[2, rows, width] = (a, b), b the top-left [b_rows, b_width]
corner of x[1] (golden.operands); `inputs` are inputs.py's patterns. No weights (`weights = "none"`). The .pte is
ExecuTorch's test_add.py module through the Vulkan partitioner (recipe.py): it contributes the delegate's one
aten.add.Tensor, checked to have the config's operand shapes, and what the kernel receives from it besides the
operands (golden.AddGraph): alpha (1: the golden multiplies b by it) and b's dims (which dims broadcast), the
fixture's alpha.npy and b_shape.npy. The fp64 golden and the one-rounding error model are in golden.py,
q4gsw's reference kernel under kernels/, the mutants in mutants.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance
from q4gsw.ops.add import golden as golden_module
from q4gsw.ops.add.golden import AddGraph
from q4gsw.ops.add.inputs import ADD_INPUTS, make_operands
from q4gsw.ops.add.recipe import ADD_OPERATOR
from q4gsw.ops.base import Binding, Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.tensor_meta import tensor_meta

ALPHA_FILE = "alpha.npy"
B_SHAPE_FILE = "b_shape.npy"
MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100, H200: 2 GiB)


class Add(Op):
    name = "add"
    operator = ADD_OPERATOR
    executorch_folder = "backends/webgpu/runtime/ops/add"
    constant_files = (ALPHA_FILE, B_SHAPE_FILE)
    input_names = ADD_INPUTS
    weight_names = ("none",)
    recipe = "test_add.py's AddModule + torch.export + Vulkan lowering"
    bench_shapes = ("rows=1,width=2048,b_rows=1,b_width=2048", "rows=512,width=2048,b_rows=512,b_width=2048")
    dims = (Dim("rows", "rows of a and of the output (tokens)"), Dim("width", "elements of a row"),
            Dim("b_rows", "rows of b: rows, or 1 (broadcast down the rows)"),
            Dim("b_width", "elements of a row of b: width, or 1 (broadcast along a row)"))

    def derived_names(self, dims: Mapping[str, int]) -> dict[str, int]:
        return {"numel": dims["rows"] * dims["width"]}

    def shape_text(self, dims: Mapping[str, int]) -> str:
        text = f"{dims['rows']}x{dims['width']}"
        if (dims["b_rows"], dims["b_width"]) != (dims["rows"], dims["width"]):
            text += f" + {dims['b_rows']}x{dims['b_width']}"
        return text

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        d = config.dims
        problems = []
        for key, full in (("b_rows", "rows"), ("b_width", "width")):
            if d[key] not in (1, d[full]):
                problems.append(ShapeProblem(key, f"{key}={d[key]} does not broadcast to {full}={d[full]}",
                                             f"use {key} = {d[full]} (same shape) or 1 (broadcast)"))
        if 4 * d["rows"] * d["width"] > MAX_BINDING_BYTES:
            problems.append(ShapeProblem("rows", f"{self.shape_text(d)} needs a "
                                         f"{4 * d['rows'] * d['width'] / 2**30:.1f} GiB buffer binding",
                                         f"no adapter q4gsw supports binds more than "
                                         f"{MAX_BINDING_BYTES / 2**30:.0f} GiB: use fewer rows"))
        return problems

    def make_input(self, name: str, config: Config) -> np.ndarray:
        """x[2, rows, width] = (a, b) (inputs.py)."""
        return make_operands(name, config.dims["rows"], config.dims["width"], config.weight_seed)

    def output_shape(self, config: Config) -> tuple[int, ...]:
        return (config.dims["rows"], config.dims["width"])

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        """One correctly rounded fp32 addition per output, as every config's tolerance (4u)."""
        return Tolerance(atol=1.18e-38, rtol=2.4e-7, justification="bench sanity check", source="bench")

    def flops(self, config: Config) -> int:
        return config.dims["rows"] * config.dims["width"]

    def bytes_moved(self, config: Config) -> int:
        d = config.dims
        return 4 * (2 * d["rows"] * d["width"] + d["b_rows"] * d["b_width"])

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.add.recipe import export_pte

        return export_pte(config)

    def constants_from_pte(self, pte: bytes) -> AddGraph:
        from q4gsw.ops.add.recipe import graph_from_pte

        return graph_from_pte(pte)

    def cross_check(self, pte: bytes, constants: AddGraph, quantized: Any, config: Config) -> None:
        from q4gsw.ops.add.recipe import cross_check

        cross_check(pte, constants, quantized, config)

    def constants_to_files(self, constants: AddGraph) -> dict[str, np.ndarray]:
        return {ALPHA_FILE: np.array(constants.alpha, dtype=np.float64),
                B_SHAPE_FILE: np.array(constants.b_shape, dtype=np.int64)}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> AddGraph:
        return AddGraph(alpha=float(files[ALPHA_FILE]), b_shape=_pair(files[B_SHAPE_FILE]))

    def synthetic_constants(self, config: Config, seed: int) -> AddGraph:
        """alpha 1 (every exported a + b) and the config's b."""
        return AddGraph(alpha=1.0, b_shape=(config.dims["b_rows"], config.dims["b_width"]))

    def golden(self, x: np.ndarray, constants: AddGraph,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden_module.golden(*operands(x, constants), constants.alpha)

    def cpu_reference(self, x: np.ndarray, constants: AddGraph) -> np.ndarray:
        return golden_module.cpu_reference(*operands(x, constants), constants.alpha)

    def error_model(self, x: np.ndarray, constants: AddGraph) -> Any:
        return golden_module.error_model(*operands(x, constants), constants.alpha)

    def bindings(self, x: np.ndarray, constants: AddGraph, chained: bool = False) -> Bindings:
        """ExecuTorch's layout (add/BinaryOp.cpp): b0 a, b1 b, b2 out (read-write), b3/b4/b5 the TensorMeta of out,
        a and b (q4gsw/ops/tensor_meta.py). alpha is the kernel's override (1, the .pte's)."""
        a, b = operands(x, constants)
        out_shape = a.shape
        return Bindings(output_index=2, output_shape=out_shape, inputs=(
            Binding(0, a.reshape(-1)), Binding(1, b.reshape(-1)),
            Binding(3, tensor_meta(out_shape, 2), "uniform"),
            Binding(4, tensor_meta(a.shape, 2), "uniform"),
            Binding(5, tensor_meta(b.shape, 2), "uniform")))

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.add.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        return np.zeros((2, 1, 4), dtype=np.float32), AddGraph(alpha=1.0, b_shape=(1, 4))


def operands(x: np.ndarray, constants: AddGraph) -> tuple[np.ndarray, np.ndarray]:
    return golden_module.operands(x, *constants.b_shape)


def _pair(array: np.ndarray) -> tuple[int, int]:
    rows, width = (int(n) for n in np.asarray(array).reshape(-1))
    return rows, width
