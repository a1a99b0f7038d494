"""embedding_q4gsw: out[i, :] = dequant(W[indices[i], :]), a gather of int4 group-quantized table rows.

ExecuTorch's et_vk.embedding_q4gsw, as its WebGPU backend runs it (backends/webgpu/runtime/ops/embedding_q4gsw/).
A config's shape in this op's words:
  M          = the number of gathered indices (the output's rows),
  K          = the vocabulary: the table's rows,
  N          = the embedding dim: the table's columns (a multiple of 32, as ExecuTorch's kernel requires),
  group_size = the quantization group along the embedding dim (N / group_size scales per table row).
The output is [M, N] fp32. The inputs (matrix.toml `inputs`) are int32 indices [M], not activations
(indices.py). The constants' layout is in layout.py, the export recipe in recipe.py, the fp64 golden and the
error model in golden.py, q4gsw's reference kernel under kernels/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops.base import Binding, Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.embedding_q4gsw import golden as golden_module
from q4gsw.ops.embedding_q4gsw.indices import INDICES, make_indices
from q4gsw.ops.embedding_q4gsw.layout import (
    EMBEDDING_OPERATOR,
    PackedEmbedding,
    as_u32_words,
    pack_int4,
    packed_from_delegate,
)
from q4gsw.ops.embedding_q4gsw.recipe import TORCH_EMBEDDING

WEIGHT_FILE = "table_packed.npy"
SCALES_FILE = "table_scales.npy"
PACKING_FILE = "is_linear_weight.npy"
MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100, H200: 2 GiB)
BLOCK = 32  # ExecuTorch's kernel reads a row in blocks of 32 dims (EmbeddingQ4gsw.cpp: embed_dim % 32 == 0)


class EmbeddingQ4gsw(Op):
    name = "embedding_q4gsw"
    operator = EMBEDDING_OPERATOR
    executorch_folder = "backends/webgpu/runtime/ops/embedding_q4gsw"
    executorch_fixture_prefix = "embedding_q4gsw_"
    constant_files = (WEIGHT_FILE, SCALES_FILE, PACKING_FILE)
    input_names = tuple(INDICES)
    weight_names = (TORCH_EMBEDDING, "int4_edges", "int4_tiny_scales")
    synthetic_input = "every_row"

    def bench_tolerance(self, K: int) -> Tolerance:
        """One correctly rounded fp32 product per output, as every config's tolerance in matrix.toml (4u)."""
        return Tolerance(atol=1.18e-38, rtol=2.4e-7, justification="bench sanity check", source="bench")

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        M, K, N, group_size = config.M, config.K, config.N, config.group_size
        problems = []
        if N % BLOCK:
            problems.append(ShapeProblem("N", f"embedding dim N={N} is not a multiple of {BLOCK}",
                                         "ExecuTorch's embedding_q4gsw reads rows in blocks of 32 dims (its Vulkan "
                                         "partitioner does not fuse other dims): use a multiple of 32"))
        if N % group_size:
            problems.append(ShapeProblem("group_size", f"N={N} is not a multiple of group_size={group_size}",
                                         "groups must tile the embedding dim: change N or group_size"))
        elif group_size >= N:
            problems.append(ShapeProblem("group_size", f"group_size={group_size} makes one scale per row",
                                         "EmbeddingQuantHandler then stores 1-D scales [vocab], which ExecuTorch's "
                                         "et_vk.embedding_q4gsw cannot export (its reference reshapes them to one "
                                         "scalar) nor run (WebGPU needs 2-D scales): use group_size < N"))
        if "every_row" in config.inputs and M < K:
            problems.append(ShapeProblem("M", f"input every_row gathers all K={K} rows only with M >= K, M={M}",
                                         "raise M to at least K, or use the edges input"))
        if M * (N // BLOCK) > 2**32 - 1:
            problems.append(ShapeProblem("M", f"{M} indices x {N // BLOCK} blocks overflow ExecuTorch's u32 "
                                         "total_blocks", "use fewer indices"))
        for key, size in (("M", 4 * M * N), ("K", K * N // 2), ("K", 4 * K * max(1, N // group_size))):
            if size > MAX_BINDING_BYTES:
                problems.append(ShapeProblem(key, f"{self.describe_shape(config)} needs a {size / 2**30:.1f} GiB "
                                             "buffer binding", f"no adapter q4gsw supports binds more than "
                                             f"{MAX_BINDING_BYTES / 2**30:.0f} GiB: use a smaller shape"))
        return problems

    def make_input(self, name: str, config: Config) -> np.ndarray:
        """int32 indices [M] into the table's K rows (indices.py)."""
        return make_indices(name, config.M, config.K, config.weight_seed)

    def describe_shape(self, config: Config) -> str:
        return f"{config.M} indices into {config.K}x{config.N} gs={config.group_size}"

    def flops(self, config: Config) -> int:
        return config.M * config.N  # one multiply q * s per output

    def bytes_moved(self, config: Config) -> int:
        rows = config.M * (config.N // 2 + 4 * (config.N // config.group_size))
        return 4 * config.M + rows + 4 * config.M * config.N

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        from q4gsw.ops.embedding_q4gsw.recipe import export_pte

        return export_pte(config)

    def cross_check(self, pte: bytes, constants: PackedEmbedding, quantized: Any, config: Config) -> None:
        from q4gsw.ops.embedding_q4gsw.recipe import cross_check

        cross_check(constants, quantized, config)

    def constants_from_pte(self, pte: bytes) -> PackedEmbedding:
        return packed_from_delegate(pte)

    def constants_to_files(self, constants: PackedEmbedding) -> dict[str, np.ndarray]:
        return {WEIGHT_FILE: np.ascontiguousarray(constants.weight),
                SCALES_FILE: np.ascontiguousarray(constants.scales),
                PACKING_FILE: np.array(constants.is_linear_weight, dtype=np.bool_)}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> PackedEmbedding:
        return PackedEmbedding(weight=files[WEIGHT_FILE], scales=files[SCALES_FILE], group_size=config.group_size,
                               is_linear_weight=bool(files[PACKING_FILE]))

    def check_constants(self, constants: PackedEmbedding, config: Config) -> str:
        expected = ((config.K, config.N // 2), (config.K, config.N // config.group_size), config.group_size)
        if (constants.weight.shape, constants.scales.shape, constants.group_size) != expected:
            return (f"holds a {constants.vocab}x{constants.dim} table with scales {constants.scales.shape}, "
                    f"group_size={constants.group_size}; config '{config.name}' has {self.describe_shape(config)}")
        return ""

    def synthetic_constants(self, config: Config, seed: int) -> PackedEmbedding:
        """Random nibbles with the scales of a quantized nn.Embedding (N(0, 1) rows: max|w| ~ 2.5, scale ~ 0.33),
        in the packing every export produces (is_linear_weight true)."""
        rng = np.random.default_rng(seed)
        q = rng.integers(-8, 8, size=(config.K, config.N), dtype=np.int8)
        scales = (0.2 + 0.3 * rng.random((config.K, config.N // config.group_size))).astype(np.float32)
        return PackedEmbedding(weight=pack_int4(q, True), scales=scales, group_size=config.group_size,
                               is_linear_weight=True)

    def golden(self, x: np.ndarray, constants: PackedEmbedding,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden_module.golden(x, constants, progress=progress)

    def cpu_reference(self, x: np.ndarray, constants: PackedEmbedding) -> np.ndarray:
        return golden_module.cpu_reference(x, constants)

    def error_model(self, x: np.ndarray, constants: PackedEmbedding) -> Any:
        return golden_module.error_model(x, constants)

    def bindings(self, x: np.ndarray, constants: PackedEmbedding, chained: bool = False) -> Bindings:
        """ExecuTorch's layout: b0 out f32, b1 indices i32, b2 table bytes as u32 words, b3 scales f32, b4 Params
        {embed_dim, blocks_per_row, num_indices, group_size, groups_per_row, bytes_per_row, total_blocks,
        is_linear_weight}."""
        indices = np.ascontiguousarray(x, dtype=np.int32).reshape(-1)
        dim = constants.dim
        params = np.array([dim, dim // BLOCK, len(indices), constants.group_size, dim // constants.group_size,
                           dim // 2, len(indices) * (dim // BLOCK), int(constants.is_linear_weight)], dtype=np.uint32)
        return Bindings(output_index=0, output_shape=(len(indices), dim), inputs=(
            Binding(1, indices),
            Binding(2, as_u32_words(constants.weight)),
            Binding(3, np.ascontiguousarray(constants.scales, np.float32)),
            Binding(4, params, "uniform")))

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.embedding_q4gsw.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        tiny = PackedEmbedding(weight=pack_int4(np.zeros((2, BLOCK), dtype=np.int64), True),
                               scales=np.ones((2, 1), dtype=np.float32), group_size=BLOCK, is_linear_weight=True)
        return np.zeros(1, dtype=np.int32), tiny
