"""linear_q4gsw's mutation self-test: a simple correct kernel (kernels/mutants/reference.wgsl) and the
bugs real q4gsw kernel authors make (nibble order, nibble offset, scale index, dropped K tail, fp16
accumulation, ...), each an exact text substitution in the reference."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import Mutant, MutationSuite

REFERENCE = Path(__file__).parent / "kernels" / "mutants" / "reference.wgsl"


def _f16(expr: str) -> str:
    """Round an f32 expression to the nearest f16 with core WGSL (no shader-f16 needed)."""
    return f"unpack2x16float(pack2x16float(vec2<f32>({expr}, 0.0))).x"


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("nibbles_swapped", "element 2j read from the high nibble and 2j+1 from the low one",
           (("let shift = 4u * j;", "let shift = 4u * (j ^ 1u);"),)),
    Mutant("offset_7", "nibble offset 7 instead of 8 (q = nibble - 7)",
           (("& 0xFu) - 8;  // MUT:offset", "& 0xFu) - 7;  // MUT:offset"),)),
    Mutant("twos_complement", "nibble read as a signed two's-complement int4 instead of offset-binary",
           (("let q = i32((word >> shift) & 0xFu) - 8;", "let q = (i32((word >> shift) & 0xFu) ^ 8) - 8;"),)),
    Mutant("scale_group_boundary", "scale group off by one at group ends: (k + 1) / group_size",
           (("let g = k / params.group_size;", "let g = (k + 1u) / params.group_size;"),)),
    Mutant("scale_group_next", "scale group off by one: k / group_size + 1",
           (("let g = k / params.group_size;", "let g = k / params.group_size + 1u;"),)),
    Mutant("group_size_32", "group size hard-coded to 32 instead of read from params",
           (("let g = k / params.group_size;", "let g = k / 32u;"),)),
    Mutant("scales_transposed", "scales read as [N, K/group_size] instead of [K/group_size, padded_N]",
           (("return t_scales[g * params.padded_N + n];",
             "return t_scales[n * (params.K / params.group_size) + g];"),)),
    Mutant("k_tail_dropped", "K walked in vec4<u32> steps (32 values), the K % 32 tail dropped",
           (("let words = words_per_row;", "let words = (words_per_row / 4u) * 4u;"),)),
    Mutant("fp16_accumulation", "accumulator kept in fp16 (emulated: rounded to f16 after every add)",
           (("return acc + term;", f"return {_f16('acc + term')};"),)),
    Mutant("fp16_products", "products rounded to fp16 before an fp32 accumulation",
           (("return acc + term;", f"return acc + {_f16('term')};"),)),
    Mutant("row0_reused", "row 0 of x used for every output row",
           (("let row = m;", "let row = 0u;"),)),
    Mutant("x_row_stride_n", "x rows strided by N instead of K",
           (("let v = t_input[row * params.K + k];", "let v = t_input[row * params.N + k];"),)),
    Mutant("output_transposed", "y stored column-major ([N, M]) instead of row-major",
           (("t_out[m * params.N + n] = acc;", "t_out[n * params.M + m] = acc;"),)),
    Mutant("last_n_tile_skipped", "output columns past the last whole 64-wide tile never computed",
           (("let n_end = params.N;", "let n_end = (params.N / wg_size) * wg_size;"),)),
    Mutant("inputs_clamped", "activations clamped to [-16, 16] (e.g. to keep an fp16 path safe)",
           (("return v;  // MUT:clamp", "return clamp(v, -16.0, 16.0);  // MUT:clamp"),)),
)



SUITE = MutationSuite(reference=REFERENCE, dispatch="ceil(N / wg_size), M", overrides={"wg_size": "64"},
                      mutants=CATALOGUE)
