"""embedding_q4gsw's mutation self-test: the simple correct kernel (kernels/reference.wgsl) and the bugs a
quantized-gather kernel author makes (nibble order, nibble offset, group scale, row stride, row or index off by
one, fp16 rounding, ...), each an exact text substitution in the reference."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import Mutant, MutationSuite

REFERENCE = Path(__file__).parent / "kernels" / "reference.wgsl"


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("packing_flag_ignored", "is_linear_weight ignored: dim 2j always read from the high nibble, the "
           "quantized_decomposed packing the export repacks away",
           (("let even_in_low = params.is_linear_weight != 0u;", "let even_in_low = false;"),)),
    Mutant("nibbles_swapped", "is_linear_weight read the wrong way round: every dim from its neighbour's nibble",
           (("let even_in_low = params.is_linear_weight != 0u;", "let even_in_low = params.is_linear_weight == 0u;"),)),
    Mutant("offset_7", "nibble offset 7 instead of 8 (q = nibble - 7)",
           (("let q = f32(i32(n) - 8);", "let q = f32(i32(n) - 7);"),)),
    Mutant("twos_complement", "nibble read as a signed two's-complement int4 instead of offset-binary",
           (("let q = f32(i32(n) - 8);", "let q = f32((i32(n) ^ 8) - 8);"),)),
    Mutant("scale_group_boundary", "group scale off by one at group ends: (dim + 1) / group_size",
           (("let g = dim / params.group_size;", "let g = (dim + 1u) / params.group_size;"),)),
    Mutant("scale_first_of_row", "the row's first group scale used for every dim",
           (("let g = dim / params.group_size;", "let g = 0u;"),)),
    Mutant("group_size_32", "group size hard-coded to 32 instead of read from params",
           (("let g = dim / params.group_size;", "let g = dim / 32u;"),)),
    Mutant("scale_row_stride", "scale rows strided by dim / group_size + 1 (a ceil written as floor + 1)",
           (("return t_scales[row * params.groups_per_row + g];",
             "return t_scales[row * (params.groups_per_row + 1u) + g];"),)),
    Mutant("token_plus_one", "table row off by one: token + 1",
           (("let token = u32(t_indices[i]);", "let token = u32(t_indices[i]) + 1u;"),)),
    Mutant("next_index", "index array read one ahead: indices[i + 1] (clamped)",
           (("let token = u32(t_indices[i]);",
             "let token = u32(t_indices[min(i + 1u, params.num_indices - 1u)]);"),)),
    Mutant("bytes_per_row_dim", "table rows strided by dim bytes instead of dim / 2 (unpacked row length)",
           (("let byte_index = row * params.bytes_per_row + dim / 2u;",
             "let byte_index = row * params.embed_dim + dim / 2u;"),)),
    Mutant("byte_order", "bytes of a u32 word taken big-endian",
           (("(8u * (byte_index % 4u))", "(8u * (3u - byte_index % 4u))"),)),
    Mutant("block_base_bytes", "32-dim block base computed in bytes (block * 16) instead of dims",
           (("let dim = block * 32u + within % 32u;", "let dim = block * 16u + within % 32u;"),)),
    Mutant("last_row_skipped", "the last gathered row never written (bound num_indices - 1)",
           (("let total = params.num_indices * params.embed_dim;",
             "let total = (params.num_indices - 1u) * params.embed_dim;"),)),
    Mutant("offset_folded", "zero point folded into a bias: nibble * s - 8 * s (two roundings, cancellation)",
           (("return q * s;", "return f32(n) * s - 8.0 * s;"),),
           equivalent_on=(("NVIDIA", "the driver contracts n * s - 8 * s into fma(n, s, -(8 * s)); 8 * s is exact, "
                                     "so the fma rounds (n - 8) * s once: the reference's bits for every scale below "
                                     "FLT_MAX / 8 (docs/mutants.md)"),)),
    # quantizeToF16 (core WGSL, SPIR-V OpQuantizeToF16), not unpack2x16float(pack2x16float(..)): NVIDIA's Vulkan
    # compiler removes a pack/unpack round trip: that spelling computed the exact f32 product there (docs/mutants.md).
    Mutant("fp16_output", "the dequantized value rounded to fp16 (an f16 output path)",
           (("return q * s;", "return quantizeToF16(q * s);"),)),
)


SUITE = MutationSuite(reference=REFERENCE,
                      dispatch="min(ceil(tokens * dim / wg_size), max_workgroups_per_dimension), "
                               "ceil(ceil(tokens * dim / wg_size) / min(ceil(tokens * dim / wg_size), "
                               "max_workgroups_per_dimension))",
                      overrides={"wg_size": "64"}, mutants=CATALOGUE)
