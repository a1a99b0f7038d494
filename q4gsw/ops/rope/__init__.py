"""rope: ExecuTorch's et_vk.apply_rotary_emb, the Llama model's rotary embedding of one tensor (q or k).

The Vulkan partitioner's "export_llama_rope" pattern (backends/vulkan/patterns/rope.py) fuses the Llama example
model's apply_rotary_emb into et_vk.apply_rotary_emb(xq, xk, freqs_cos, freqs_sin); ExecuTorch's WebGPU runtime
(backends/webgpu/runtime/ops/rope/RotaryEmbedding.cpp) dispatches rotary_embedding.wgsl once per tensor, xq then
xk, with the same tables. A config here is one such dispatch: x [seq, heads, head_dim] (the engine's one input
array; batch 1), rotated by the cos/sin rows of positions [start_pos, start_pos + seq) (tables.py); the Llama
configs give q (32 heads) and k (8 heads) configs of their own. The math is in golden.py, the recipe and how the
rows are read from the .pte in recipe.py, the reference kernel in kernels/, its mutants in mutants.py.

weights: `llama3` (the Llama-3.2-1B tables of the model's own Rope, read from the .pte) or `upstream`
(test_rope.py's ramps, forward inputs of its export: not in the .pte, start_pos 0 only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance
from q4gsw.ops import inputs
from q4gsw.ops.base import Binding, Bindings, Exported, MutationSuite, Op, Progress, ShapeProblem
from q4gsw.ops.rope.golden import cpu_reference, error_model, golden
from q4gsw.ops.rope.tables import ROPE_OPERATOR, RopeTables, llama3_tables, upstream_tables

COS_FILE = "freqs_cos.npy"
SIN_FILE = "freqs_sin.npy"
MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100, H200: 2 GiB)
MAX_GRID = 65535  # the reference kernel's grid y (tokens): WebGPU's default max workgroups per dimension
# Llama-3.2-1B's context (max_position_embeddings): a later position is no Llama step, and the export's tables
# hold 2 (start_pos + seq) rows (recipe.py), so a start_pos of 2e9 would ask torch for ~0.5 TB.
MAX_POSITIONS = 131072


def _dims(dims: Mapping[str, int]) -> tuple[int, int, int, int]:
    return dims["seq"], dims["heads"], dims["head_dim"], dims["start_pos"]


class Rope(Op):
    name = "rope"
    operator = ROPE_OPERATOR
    executorch_folder = "backends/webgpu/runtime/ops/rope"
    dims = (Dim("seq", "tokens of this step (S: 1 for decode)"),
            Dim("heads", "heads of the rotated tensor (Llama-3.2-1B: 32 for q, 8 for k)"),
            Dim("head_dim", "elements per head, head_dim / 2 rotated pairs", 2),
            Dim("start_pos", "the cache position of the first token: the first table row bound", 0))
    constant_files = (COS_FILE, SIN_FILE)
    weight_names = ("llama3", "upstream")
    bench_shapes = ("seq=1,heads=32,head_dim=64,start_pos=4095", "seq=512,heads=32,head_dim=64,start_pos=0")

    def derived_names(self, dims: Mapping[str, int]) -> dict[str, int]:
        seq, heads, head_dim, _ = _dims(dims)
        return {"half_dim": head_dim // 2, "num_pairs": seq * heads * (head_dim // 2)}

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        seq, heads, head_dim, start_pos = _dims(config.dims)
        problems = []
        if head_dim % 2:
            problems.append(ShapeProblem("head_dim", f"head_dim={head_dim} is odd: rope rotates pairs",
                                         "use an even head_dim"))
        if config.weights == "upstream" and start_pos:
            problems.append(ShapeProblem("start_pos", f"start_pos={start_pos} with weights 'upstream': test_rope.py's "
                                         "ramps are the step's own rows, there is no table to start into",
                                         "use start_pos = 0, or weights 'llama3'"))
        if start_pos + seq > MAX_POSITIONS:
            problems.append(ShapeProblem("start_pos", f"positions [{start_pos}, {start_pos + seq}) run past "
                                         f"Llama-3.2-1B's {MAX_POSITIONS}-token context",
                                         f"use start_pos + seq <= {MAX_POSITIONS}"))
        if seq > MAX_GRID:
            problems.append(ShapeProblem("seq", f"seq={seq} is over {MAX_GRID} (the reference kernel's grid y)",
                                         "split the step"))
        if 4 * seq * heads * head_dim > MAX_BINDING_BYTES:
            problems.append(ShapeProblem("seq", f"x is {4 * seq * heads * head_dim / 2**30:.1f} GiB, over the "
                                         "2 GiB binding of any adapter", "use a smaller shape"))
        return problems

    def make_input(self, name: str, config: Config) -> np.ndarray:
        """x [seq, heads, head_dim] from q4gsw's shared inputs over seq * heads rows of head_dim: `ramp` is
        test_rope.py's xq ramp ((i % 17) - 8) / 16 over the flattened tensor, bit for bit."""
        seq, heads, head_dim, _ = _dims(config.dims)
        return inputs.make_input(name, seq * heads, head_dim, config.weight_seed).reshape(seq, heads, head_dim)

    def output_shape(self, config: Config) -> tuple[int, ...]:
        seq, heads, head_dim, _ = _dims(config.dims)
        return (seq, heads, head_dim)

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        return Tolerance(atol=1e-5, rtol=1e-5, justification="bench sanity check: a rotation of normal inputs errs "
                         "by at most gamma_3 (|a| + |b|) ~ 1.6e-6 at |x| ~ 5", source="bench")

    def flops(self, config: Config) -> int:
        seq, heads, head_dim, _ = _dims(config.dims)
        return 3 * seq * heads * head_dim  # two products and one sum per output

    def bytes_moved(self, config: Config) -> int:
        seq, heads, head_dim, _ = _dims(config.dims)
        return 4 * (2 * seq * heads * head_dim + seq * head_dim)  # x, y, and two tables of seq x head_dim/2

    recipe = "Llama Rope + torch.export + Vulkan lowering"

    def export(self, config: Config, progress: Progress) -> Exported:
        """The Llama Rope's step, its rows read from the .pte at start_pos and cross-checked with the model's
        tables; or test_rope.py's export, whose rows (its ramps) are forward inputs the .pte does not hold."""
        from q4gsw.ops.rope import recipe

        seq, _heads, head_dim, _ = _dims(config.dims)
        if config.weights == "upstream":
            progress(f"export {config.name}: test_rope.py's RotaryEmbedding + Vulkan lowering "
                     f"({self.shape_text(config.dims)})")
            pte = recipe.export_upstream_pte(config)
            recipe.check_upstream_pte(pte, config)
            return Exported(pte=pte, constants=upstream_tables(seq, head_dim), cross_checked=False)
        progress(f"export {config.name}: {self.recipe} ({self.shape_text(config.dims)})")
        pte, model_tables = self.export_pte(config)
        rows = recipe.rows_from_pte(pte, config)
        recipe.cross_check(rows, model_tables, config)
        return Exported(pte=pte, constants=rows, cross_checked=True)

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.rope.recipe import export_pte

        return export_pte(config)

    def constants_to_files(self, constants: RopeTables) -> dict[str, np.ndarray]:
        return {COS_FILE: np.ascontiguousarray(constants.cos), SIN_FILE: np.ascontiguousarray(constants.sin)}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> RopeTables:
        return RopeTables(cos=files[COS_FILE], sin=files[SIN_FILE], start_pos=config.dims["start_pos"])

    def synthetic_constants(self, config: Config, seed: int) -> RopeTables:
        """The config's rows built in fp64 from theta and the Llama-3 scaling (tables.llama3_tables)."""
        seq, _, head_dim, start_pos = _dims(config.dims)
        if config.weights == "upstream":
            return upstream_tables(seq, head_dim)
        return llama3_tables(seq, head_dim, start_pos)

    def golden(self, x: np.ndarray, constants: RopeTables,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden(x, constants, progress=progress)

    def cpu_reference(self, x: np.ndarray, constants: RopeTables) -> np.ndarray:
        return cpu_reference(x, constants)

    def error_model(self, x: np.ndarray, constants: RopeTables) -> Any:
        return error_model(x, constants)

    def bindings(self, x: np.ndarray, constants: RopeTables, chained: bool = False) -> Bindings:
        """RotaryEmbedding.cpp's layout: b0 out, b1 x, b2 freqs_cos, b3 freqs_sin ([S, head_dim/2] each), b4
        RotaryParams {n_heads, seq, head_dim, half_dim, num_pairs, 0, 0, 0}."""
        seq, heads, head_dim = x.shape
        if seq != constants.seq or head_dim != 2 * constants.half_dim:
            raise ValueError(f"x {x.shape} does not fit tables of {constants.seq} rows x {constants.half_dim} pairs")
        params = np.array([heads, seq, head_dim, head_dim // 2, seq * heads * head_dim // 2, 0, 0, 0], np.uint32)
        return Bindings(output_index=0, output_shape=(seq, heads, head_dim), inputs=(
            Binding(1, np.ascontiguousarray(x, np.float32)),
            Binding(2, np.ascontiguousarray(constants.cos, np.float32)),
            Binding(3, np.ascontiguousarray(constants.sin, np.float32)),
            Binding(4, params, "uniform")))

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.rope.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        one = np.ones((1, 1), np.float32)
        return np.ones((1, 1, 2), np.float32), RopeTables(cos=one, sin=np.zeros_like(one), start_pos=0)
