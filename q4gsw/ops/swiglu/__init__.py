"""swiglu: out = gate * sigmoid(gate) * up, the SwiGLU of a Llama FFN as ExecuTorch's WebGPU runtime runs it.

The exported graph holds no SwiGLU operator: the Vulkan partitioner's delegate runs aten.sigmoid.default and two
aten.mul.Tensor after the gate and up projections, and ExecuTorch's runtime pass runtime/passes/SwiGLU.cpp replaces
them by one dispatch of mul/silu_mul_fused.wgsl when gate and up are two et_vk.linear_q4gsw calls on one input and
nothing else reads the intermediates (fusion.py); otherwise sigmoid.wgsl and the binary mul run unfused (not this
op's kernels). A config's shape in this op's words (its `dims`, matrix.toml keys):
  rows  = the tokens (1 for a decode step, S for a prefill),
  width = the FFN width (8192 for Llama-3.2-1B).
The engine's one input packs both operands: x[2, rows, width] = (gate, up), the linears' outputs the fused kernel
binds (inputs.py: normal, outliers with saturating gates and large up values, ramp). No weights
(`weights = "none"`). The .pte is upstream's SwiGLU test module (two q4 linears 64 -> width, recipe.py): it
contributes the delegate chain, checked to be the one pattern the pass fuses with [rows, width] gate, up and out,
and recorded as the fixture's delegate_calls.npy; the kernel itself reads no constant. The fp64 golden and the
error model (WGSL's exp and division accuracy) are in golden.py, q4gsw's reference kernel under kernels/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance
from q4gsw.ops.base import Binding, Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.swiglu import golden as golden_module
from q4gsw.ops.swiglu.fusion import FUSED_DISPATCH
from q4gsw.ops.swiglu.inputs import SWIGLU_INPUTS, make_gate_up
from q4gsw.ops.tensor_meta import tensor_meta

CALLS_FILE = "delegate_calls.npy"
MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100, H200: 2 GiB)


class Swiglu(Op):
    name = "swiglu"
    # No delegate operator is this op: the runtime pass makes the dispatch from aten.sigmoid.default + two
    # aten.mul.Tensor (the fixture's delegate_calls.npy), and only after q4gsw projections. Naming the dispatch
    # keeps `graph` from counting an unfused sigmoid or mul (8da4w projections: sigmoid.wgsl, binary mul) as checked.
    operator = FUSED_DISPATCH
    executorch_folder = "backends/webgpu/runtime/ops/mul"
    constant_files = (CALLS_FILE,)
    input_names = SWIGLU_INPUTS
    weight_names = ("none",)
    recipe = "the q4 gate/up SwiGLU module + torch.export + Vulkan lowering"
    bench_shapes = ("rows=1,width=8192", "rows=512,width=8192")
    dims = (Dim("rows", "rows of gate, up and the output (tokens)"), Dim("width", "elements of a row (FFN width)"))

    def derived_names(self, dims: Mapping[str, int]) -> dict[str, int]:
        return {"numel": dims["rows"] * dims["width"]}

    def shape_text(self, dims: Mapping[str, int]) -> str:
        return f"{dims['rows']}x{dims['width']}"

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        size = 4 * config.dims["rows"] * config.dims["width"]
        if size > MAX_BINDING_BYTES:
            return [ShapeProblem("rows", f"{self.shape_text(config.dims)} needs a {size / 2**30:.1f} GiB buffer "
                                 "binding", f"no adapter q4gsw supports binds more than "
                                 f"{MAX_BINDING_BYTES / 2**30:.0f} GiB: use fewer rows")]
        return []

    def make_input(self, name: str, config: Config) -> np.ndarray:
        """x[2, rows, width] = (gate, up) (inputs.py)."""
        return make_gate_up(name, config.dims["rows"], config.dims["width"], config.weight_seed)

    def output_shape(self, config: Config) -> tuple[int, ...]:
        return (config.dims["rows"], config.dims["width"])

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        """The configs' tolerance (matrix.toml's block header)."""
        return Tolerance(atol=2.4e-38, rtol=1e-4, justification="bench sanity check", source="bench")

    def flops(self, config: Config) -> int:
        return 5 * config.dims["rows"] * config.dims["width"]  # negate, exp, add, reciprocal, two products ~ 5

    def bytes_moved(self, config: Config) -> int:
        return 12 * config.dims["rows"] * config.dims["width"]

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.swiglu.recipe import export_pte

        return export_pte(config)

    def constants_from_pte(self, pte: bytes) -> tuple[str, ...]:
        from q4gsw.ops.swiglu.recipe import calls_from_pte

        return calls_from_pte(pte)

    def cross_check(self, pte: bytes, constants: tuple[str, ...], quantized: Any, config: Config) -> None:
        from q4gsw.ops.swiglu.recipe import cross_check

        cross_check(pte, constants, quantized, config)

    def constants_to_files(self, constants: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {CALLS_FILE: np.array(constants, dtype=np.str_)}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> tuple[str, ...]:
        return tuple(str(name) for name in np.asarray(files[CALLS_FILE]).reshape(-1))

    def synthetic_constants(self, config: Config, seed: int) -> tuple[str, ...]:
        from q4gsw.ops.swiglu.recipe import EXPECTED_CALLS

        return EXPECTED_CALLS

    def golden(self, x: np.ndarray, constants: tuple[str, ...],
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden_module.golden(*golden_module.operands(x))

    def cpu_reference(self, x: np.ndarray, constants: tuple[str, ...]) -> np.ndarray:
        return golden_module.cpu_reference(*golden_module.operands(x))

    def error_model(self, x: np.ndarray, constants: tuple[str, ...]) -> Any:
        return golden_module.error_model(*golden_module.operands(x))

    def bindings(self, x: np.ndarray, constants: tuple[str, ...], chained: bool = False) -> Bindings:
        """SwiGLU.cpp's layout: b0 gate, b1 up, b2 out (read-write), b3 the uniform {num_elements, 3 x pad}."""
        gate, up = golden_module.operands(x)
        params = np.array([gate.size, 0, 0, 0], dtype=np.uint32)
        return Bindings(output_index=2, output_shape=gate.shape, inputs=(
            Binding(0, gate.reshape(-1)), Binding(1, up.reshape(-1)), Binding(3, params, "uniform")))

    # The runtime's two routes, each a chain of dispatches: fused (silu_mul_fused: gate, up -> out) and unfused, what
    # it runs when SwiGLU.cpp does not fuse (8da4w projections): sigmoid (gate -> s), mul_silu (gate * s -> t),
    # mul_up (t * up -> out), each of ExecuTorch's own layout (unary/UnaryOp.cpp, mul/BinaryOp.cpp).
    stages = ("fused", "sigmoid", "mul_silu", "mul_up")

    def stage_bindings(self, stage: str, x: np.ndarray, constants: tuple[str, ...]) -> Bindings:
        if stage == "fused":
            return self.bindings(x, constants)
        gate, up = golden_module.operands(x)
        n, shape = gate.size, gate.shape
        meta = tensor_meta(shape, 2)
        if stage == "sigmoid":  # UnaryParams {num_elements, min, max, pad}
            return Bindings(output_index=None, output_shape=shape, inputs=(
                Binding(0, gate.reshape(-1)), Binding(1, np.zeros(n, np.float32), "storage", shared="sigmoid"),
                Binding(2, np.array([n, 0, 0, 0], dtype=np.uint32), "uniform")))
        metas = (Binding(3, meta, "uniform"), Binding(4, meta, "uniform"), Binding(5, meta, "uniform"))
        if stage == "mul_silu":  # the graph's mul(gate, sigmoid)
            return Bindings(output_index=None, output_shape=shape, inputs=(
                Binding(0, gate.reshape(-1)), Binding(1, np.zeros(n, np.float32), shared="sigmoid"),
                Binding(2, np.zeros(n, np.float32), "storage", shared="silu"), *metas))
        if stage == "mul_up":  # the graph's mul(silu, up)
            return Bindings(output_index=2, output_shape=shape, inputs=(
                Binding(0, np.zeros(n, np.float32), shared="silu"), Binding(1, up.reshape(-1)), *metas))
        raise ValueError(f"swiglu has no stage {stage!r} (it has {', '.join(self.stages)})")

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.swiglu.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        return np.zeros((2, 1, 4), dtype=np.float32), ()
