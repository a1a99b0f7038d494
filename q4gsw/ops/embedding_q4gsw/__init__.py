"""embedding_q4gsw: out[i, :] = dequant(W[indices[i], :]), a gather of int4 group-quantized table rows.

ExecuTorch's et_vk.embedding_q4gsw, as its WebGPU backend runs it (backends/webgpu/runtime/ops/embedding_q4gsw/).
A config's shape in this op's words (its `dims`, matrix.toml keys):
  tokens     = the number of gathered indices (the output's rows),
  vocab      = the vocabulary: the table's rows,
  dim        = the embedding dim: the table's columns (a multiple of 32, as ExecuTorch's kernel requires),
  group_size = the quantization group along the embedding dim (dim / group_size scales per table row).
The output is [tokens, dim] fp32. The inputs (matrix.toml `inputs`) are int32 indices [tokens], not activations
(indices.py). The constants' layout is in layout.py, the export recipe in recipe.py, the fp64 golden and the
error model in golden.py, q4gsw's reference kernel under kernels/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance
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
    synthetic_input = "edges"  # any number of tokens: a decode step gathers one row of the whole vocabulary
    bench_shapes = ("tokens=1,vocab=128256,dim=2048", "tokens=512,vocab=128256,dim=2048")
    dims = (Dim("tokens", "indices gathered: the output's rows"), Dim("vocab", "the table's rows"),
            Dim("dim", "the embedding width: the table's columns"),
            Dim("group_size", "table entries per int4 scale along dim"))

    def shape_text(self, dims: Mapping[str, int]) -> str:
        return f"tokens={dims['tokens']} vocab={dims['vocab']} dim={dims['dim']} gs={dims['group_size']}"

    def dims_from_v2(self, shape: Mapping[str, int]) -> dict[str, int] | None:
        """Schema 2 wrote this op's shape in a linear's words: M indices into a K x N table."""
        return {"tokens": int(shape["M"]), "vocab": int(shape["K"]), "dim": int(shape["N"]),
                "group_size": int(shape["group_size"])}

    def output_shape(self, config: Config) -> tuple[int, ...]:
        return (config.dims["tokens"], config.dims["dim"])

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        """One correctly rounded fp32 product per output, as every config's tolerance in matrix.toml (4u)."""
        return Tolerance(atol=1.18e-38, rtol=2.4e-7, justification="bench sanity check", source="bench")

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        d = config.dims
        tokens, vocab, dim, group_size = d["tokens"], d["vocab"], d["dim"], d["group_size"]
        problems = []
        if dim % BLOCK:
            problems.append(ShapeProblem("dim", f"embedding dim={dim} is not a multiple of {BLOCK}",
                                         "ExecuTorch's embedding_q4gsw reads rows in blocks of 32 dims (its Vulkan "
                                         "partitioner does not fuse other dims): use a multiple of 32"))
        if dim % group_size:
            problems.append(ShapeProblem("group_size", f"dim={dim} is not a multiple of group_size={group_size}",
                                         "groups must tile the embedding dim: change dim or group_size"))
        elif group_size >= dim:
            problems.append(ShapeProblem("group_size", f"group_size={group_size} makes one scale per row",
                                         "EmbeddingQuantHandler then stores 1-D scales [vocab], which ExecuTorch's "
                                         "et_vk.embedding_q4gsw cannot export (its reference reshapes them to one "
                                         "scalar) nor run (WebGPU needs 2-D scales): use group_size < dim"))
        if "every_row" in config.inputs and tokens < vocab:
            problems.append(ShapeProblem("tokens", f"input every_row gathers all vocab={vocab} rows only with "
                                         f"tokens >= vocab, tokens={tokens}",
                                         "raise tokens to at least vocab, or use the edges input"))
        if tokens * (dim // BLOCK) > 2**32 - 1:
            problems.append(ShapeProblem("tokens", f"{tokens} indices x {dim // BLOCK} blocks overflow ExecuTorch's "
                                         "u32 total_blocks", "use fewer indices"))
        for key, size in (("tokens", 4 * tokens * dim), ("vocab", vocab * dim // 2),
                          ("vocab", 4 * vocab * max(1, dim // group_size))):
            if size > MAX_BINDING_BYTES:
                problems.append(ShapeProblem(key, f"{self.shape_text(config.dims)} needs a {size / 2**30:.1f} GiB "
                                             "buffer binding", f"no adapter q4gsw supports binds more than "
                                             f"{MAX_BINDING_BYTES / 2**30:.0f} GiB: use a smaller shape"))
        return problems

    def make_input(self, name: str, config: Config) -> np.ndarray:
        """int32 indices [tokens] into the table's vocab rows (indices.py)."""
        return make_indices(name, config.dims["tokens"], config.dims["vocab"], config.weight_seed)

    def flops(self, config: Config) -> int:
        return config.dims["tokens"] * config.dims["dim"]  # one multiply q * s per output

    def bytes_moved(self, config: Config) -> int:
        tokens, dim, group_size = config.dims["tokens"], config.dims["dim"], config.dims["group_size"]
        rows = tokens * (dim // 2 + 4 * (dim // group_size))
        return 4 * tokens + rows + 4 * tokens * dim

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
        return PackedEmbedding(weight=files[WEIGHT_FILE], scales=files[SCALES_FILE],
                               group_size=config.dims["group_size"], is_linear_weight=bool(files[PACKING_FILE]))

    def check_constants(self, constants: PackedEmbedding, config: Config) -> str:
        vocab, dim, group_size = config.dims["vocab"], config.dims["dim"], config.dims["group_size"]
        expected = ((vocab, dim // 2), (vocab, dim // group_size), group_size)
        if (constants.weight.shape, constants.scales.shape, constants.group_size) != expected:
            return (f"holds a {constants.vocab}x{constants.dim} table with scales {constants.scales.shape}, "
                    f"group_size={constants.group_size}; config '{config.name}' has {self.shape_text(config.dims)}")
        return ""

    def synthetic_constants(self, config: Config, seed: int) -> PackedEmbedding:
        """Random nibbles with the scales of a quantized nn.Embedding (N(0, 1) rows: max|w| ~ 2.5, scale ~ 0.33),
        in the packing every export produces (is_linear_weight true)."""
        vocab, dim, group_size = config.dims["vocab"], config.dims["dim"], config.dims["group_size"]
        rng = np.random.default_rng(seed)
        q = rng.integers(-8, 8, size=(vocab, dim), dtype=np.int8)
        scales = (0.2 + 0.3 * rng.random((vocab, dim // group_size))).astype(np.float32)
        return PackedEmbedding(weight=pack_int4(q, True), scales=scales, group_size=group_size,
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
