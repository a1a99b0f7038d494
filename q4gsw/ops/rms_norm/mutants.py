"""rms_norm's mutation self-test: the reference kernel (kernels/rms_norm_reference.wgsl) and the bugs an rms_norm
author makes, each an exact text substitution in the reference.

Which configs kill which: eps bugs move y by about eps / (2 m) relative (m the row's mean square), so only rows
whose mean square is near eps expose them (the `outliers` input's 0.02-scale rows, upstream's mixed_sign and
distinct_rows); the width % 4 habits (tail dropped, rows padded to vec4) only widths not divisible by 4
(upstream's width_130, rms_edge_odd_rows); an f16 sum only overflows on outliers (x^2 > 65504 for |x| > 256)."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import Mutant, MutationSuite

REFERENCE = Path(__file__).parent / "kernels" / "rms_norm_reference.wgsl"
SCALE = "row_scale = inverseSqrt(total / f32(width) + params.eps);"
SQUARE = "squares = squares + v * v;"
SUM_LOOP = "for (var i = start; i < end; i = i + 1u) {"

CATALOGUE: tuple[Mutant, ...] = (
    Mutant("mean_over_width_minus_1", "mean square divided by width - 1 (a sample-variance habit)",
           ((SCALE, "row_scale = inverseSqrt(total / f32(width - 1u) + params.eps);"),)),
    Mutant("eps_missing", "eps left out: 1 / sqrt(mean(x^2))",
           ((SCALE, "row_scale = inverseSqrt(total / f32(width));"),)),
    Mutant("eps_on_the_sum", "eps added to the sum of squares instead of the mean",
           ((SCALE, "row_scale = inverseSqrt((total + params.eps) / f32(width));"),)),
    Mutant("eps_outside_the_root", "1 / (sqrt(mean) + eps): eps added after the square root",
           ((SCALE, "row_scale = 1.0 / (sqrt(total / f32(width)) + params.eps);"),)),
    Mutant("rms_not_inverted", "y = x * rms * w: sqrt where inverseSqrt belongs",
           ((SCALE, "row_scale = sqrt(total / f32(width) + params.eps);"),)),
    Mutant("abs_not_square", "mean of |x| (an L1 norm) instead of mean of x^2",
           ((SQUARE, "squares = squares + abs(v);"),)),
    Mutant("fp16_sum", "sum of squares kept in f16 (quantizeToF16 after every add; core WGSL): rounds at 2^-11 "
           "and overflows past 65504",
           ((SQUARE, "squares = quantizeToF16(squares + v * v);"),)),
    Mutant("only_first_partial", "the cross-invocation reduction left out: invocation 0's chunk alone",
           (("for (var j = 0u; j < wg_size; j = j + 1u) {", "for (var j = 0u; j < 1u; j = j + 1u) {"),)),
    Mutant("last_partial_dropped", "the reduction stops one partial short (j < wg_size - 1)",
           (("for (var j = 0u; j < wg_size; j = j + 1u) {", "for (var j = 0u; j + 1u < wg_size; j = j + 1u) {"),)),
    Mutant("last_element_dropped", "the sum of squares stops one element short of the row",
           ((SUM_LOOP, "for (var i = start; i < min(end, width - 1u); i = i + 1u) {"),)),
    Mutant("tail_dropped_vec4", "the sum walks whole vec4s: the width % 4 tail left out",
           ((SUM_LOOP, "for (var i = start; i < min(end, (width / 4u) * 4u); i = i + 1u) {"),)),
    Mutant("row_stride_vec4_padded", "rows strided by width rounded up to a multiple of 4",
           (("let base = row * width;", "let base = row * (((width + 3u) / 4u) * 4u);"),)),
    Mutant("sum_of_row_0", "every row's sum of squares read from row 0",
           (("let v = x[base + i];", "let v = x[i];"),)),
    Mutant("gain_neighbour", "weight read one element off (weight[k + 1], wrapping)",
           (("* weight[k];", "* weight[(k + 1u) % width];"),)),
    Mutant("gain_by_flat_index", "weight indexed by the flat element index instead of the column",
           (("* weight[k];", "* weight[base + k];"),)),
)

SUITE = MutationSuite(reference=REFERENCE, dispatch="rows", overrides={"wg_size": "64"}, mutants=CATALOGUE)
