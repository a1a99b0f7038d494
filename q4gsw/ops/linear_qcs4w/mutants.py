"""linear_qcs4w's mutation self-test: the op's simple correct kernel (kernels/qcs4w_reference.wgsl) and the bugs
a qcs4w kernel author makes, most of them by carrying linear_q4gsw's habits over (low-nibble-first order, word-
aligned rows, per-group scale indexing), each an exact text substitution in the reference.

last_tile_overhang_written is a write race: the overhang of row m lands on row m + 1's first columns, which their
own invocations also write, so whether the wrong value stays is the adapter's scheduling. SwiftShader keeps it on
every N % 4 != 0 config; lavapipe only on qcs4w_tiles_tail (70 rows, 3 workgroups a row). output_stride_tile_padded
is the same tile-padding mistake made deterministic."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import Mutant, MutationSuite

REFERENCE = Path(__file__).parent / "kernels" / "qcs4w_reference.wgsl"


def _f16(expr: str) -> str:
    """Round an f32 expression to the nearest f16 with core WGSL (no shader-f16 needed)."""
    return f"unpack2x16float(pack2x16float(vec2<f32>({expr}, 0.0))).x"


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("nibbles_q4gsw_order", "even k read from the low nibble and odd k from the high one (linear_q4gsw's "
           "packing, the reverse of qcs4w's)",
           (("let nibble_shift = 4u * (1u - k % 2u);", "let nibble_shift = 4u * (k % 2u);"),)),
    Mutant("offset_7", "nibble offset 7 instead of 8 (q = nibble - 7)",
           (("return i32(nibble) - 8;  // MUT:offset", "return i32(nibble) - 7;  // MUT:offset"),)),
    Mutant("offset_missing", "nibble taken as unsigned, the +8 shift never undone (q = nibble in [0, 15])",
           (("return i32(nibble) - 8;  // MUT:offset", "return i32(nibble);  // MUT:offset"),)),
    Mutant("twos_complement", "nibble read as a signed two's-complement int4 instead of offset-binary",
           (("return i32(nibble) - 8;  // MUT:offset", "return (i32(nibble) ^ 8) - 8;  // MUT:offset"),)),
    Mutant("scale_by_k", "scale indexed by the reduction index k instead of the output channel n",
           (("return t_scales[n];  // MUT:scale_index", "return t_scales[k];  // MUT:scale_index"),)),
    Mutant("scale_neighbour", "scale of the neighbouring channel n + 1 (an off-by-one in the channel index)",
           (("return t_scales[n];  // MUT:scale_index", "return t_scales[n + 1u];  // MUT:scale_index"),)),
    Mutant("scale_per_group_32", "scale read per group of 32 along K as linear_q4gsw's [K/32, N] layout",
           (("return t_scales[n];  // MUT:scale_index",
             "return t_scales[(k / 32u) * params.N + n];  // MUT:scale_index"),)),
    Mutant("row_stride_k", "weight rows strided by K (nibbles) instead of K_packed (bytes)",
           (("let row_start = n * params.K_packed;", "let row_start = n * params.K;"),)),
    Mutant("row_stride_words", "weight rows assumed to start on a u32 word: stride floor(K_packed / 4) words",
           (("let row_start = n * params.K_packed;", "let row_start = n * ((params.K_packed / 4u) * 4u);"),)),
    Mutant("bytes_big_endian", "bytes taken from a u32 word most-significant first",
           (("let byte_shift = 8u * (byte_index % 4u);", "let byte_shift = 8u * (3u - byte_index % 4u);"),)),
    Mutant("k_tail_dropped", "K walked in whole u32 words (8 nibbles), the K % 8 tail dropped",
           (("let k_end = params.K;", "let k_end = (params.K / 8u) * 8u;"),)),
    Mutant("last_k_dropped", "reduction loop stops one element early (k < K - 1)",
           (("let k_end = params.K;", "let k_end = params.K - 1u;"),)),
    Mutant("fp16_accumulation", "accumulator kept in fp16 (emulated: rounded to f16 after every add)",
           (("return acc + term;", f"return {_f16('acc + term')};"),)),
    Mutant("row0_reused", "row 0 of x used for every output row",
           (("let row = m;", "let row = 0u;"),)),
    Mutant("x_row_stride_n", "x rows strided by N instead of K",
           (("let v = t_input[row * params.K + k];", "let v = t_input[row * params.N + k];"),)),
    Mutant("output_transposed", "y stored column-major ([N, M]) instead of row-major",
           (("t_out[m * params.N + n] = acc;", "t_out[n * params.M + m] = acc;"),)),
    Mutant("output_stride_tile_padded", "y rows strided by N rounded up to the 4-wide register tile",
           (("t_out[m * params.N + n] = acc;", "t_out[m * (((params.N + 3u) / 4u) * 4u) + n] = acc;"),)),
    Mutant("last_tile_overhang_written", "the last 4-wide column tile's overhang (n >= N) computed and stored, "
           "spilling into the next row",
           (("let n_end = params.N;", "let n_end = ((params.N + 3u) / 4u) * 4u;"),)),
)

SUITE = MutationSuite(reference=REFERENCE, dispatch="ceil(N / wg_size), M", overrides={"wg_size": "64"},
                      mutants=CATALOGUE)
