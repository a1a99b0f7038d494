"""linear_dq8ca_q4gsw's mutation self-test: q4gsw's two reference kernels, chained as the runtime chains them
(kernels/choose_qparams_reference.wgsl, then kernels/dq8ca_reference.wgsl reading the qparams it wrote), and the
bugs authors of either make, each an exact text substitution in one of them (Mutant.in_before: in the
choose_qparams kernel)."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import BeforeReference, Mutant, MutationSuite

KERNELS = Path(__file__).parent / "kernels"

LINEAR: tuple[Mutant, ...] = (
    Mutant("zp_sign", "zero point subtracted instead of added: xq = round(x / s) - z",
           (("clamp(i32(round(x / s)) + z, -128, 127)", "clamp(i32(round(x / s)) - z, -128, 127)"),)),
    Mutant("zp_byte_order", "zero point of row m read from byte 3 - m % 4 of its word (big-endian packing)",
           (("(8u * (m % 4u))", "(8u * (3u - m % 4u))"),)),
    Mutant("zp_unsigned", "int8 zero point read as an unsigned byte (no sign extension): -128 becomes 128",
           (("return bitcast<i32>(byte << 24u) >> 24u;", "return i32(byte);"),)),
    Mutant("clamp_127", "codes clamped to [-127, 127] (symmetric int8) instead of [-128, 127]",
           (("clamp(i32(round(x / s)) + z, -128, 127)", "clamp(i32(round(x / s)) + z, -127, 127)"),)),
    Mutant("floor", "x / s floored instead of rounded to nearest",
           (("i32(round(x / s))", "i32(floor(x / s))"),)),
    Mutant("truncate", "x / s converted to int directly (rounds toward zero) instead of rounded",
           (("i32(round(x / s))", "i32(x / s)"),)),
    Mutant("group_scale_next", "the neighbouring group's weight scale: k / group_size + 1",
           (("let g = k / params.group_size;", "let g = k / params.group_size + 1u;"),)),
    Mutant("scale_per_column", "activation scale indexed by the output column n instead of the row m",
           (("let s = t_input_scale[m];", "let s = t_input_scale[n];"),)),
    Mutant("output_unscaled", "activation scale applied to the codes but not to the sum (y = acc)",
           (("var y = s * acc;", "var y = acc;"),)),
)

QPARAMS: tuple[Mutant, ...] = (
    Mutant("qp_zero_not_in_range", "[min, max] not extended to contain 0 (an all-positive row gets min > 0)",
           (("var lo = 0.0;", "var lo = t_input[base];"), ("var hi = 0.0;", "var hi = t_input[base];")), True),
    Mutant("qp_zp_truncated", "zero point not rounded: qmin - i32(min / scale) truncates toward zero",
           (("i32(round(lo / scale))", "i32(lo / scale)"),), True),
    Mutant("qp_zp_floor", "zero point floored instead of rounded",
           (("i32(round(lo / scale))", "i32(floor(lo / scale))"),), True),
    Mutant("qp_zp_sign", "zero point sign flipped: qmin + round(min / scale)",
           (("params.quant_min - i32(round(lo / scale))", "params.quant_min + i32(round(lo / scale))"),), True),
    Mutant("qp_zp_clamp_127", "zero point clamped to [-127, 127] instead of [-128, 127]",
           (("clamp(zp, params.quant_min, params.quant_max)", "clamp(zp, -127, params.quant_max)"),), True),
    Mutant("qp_zp_byte_order", "zero point of row r packed into byte 3 - r of the block's word",
           (("<< (8u * r)", "<< (8u * (3u - r))"),), True),
    Mutant("qp_levels_256", "scale = range / 256 (qmax - qmin + 1 levels) instead of / 255",
           (("f32(params.quant_max - params.quant_min)", "f32(params.quant_max - params.quant_min + 1)"),), True),
    Mutant("qp_small_scale_threshold", "scales below 6.1e-5 raised to 6.1e-5 (ExecuTorch's SMALL_SCALE_THRESHOLD; "
                                       "torchao clamps at 2^-126 only)",
           (("max((hi - lo) / levels, EPS)", "max((hi - lo) / levels, 6.1e-5)"),), True),
)

SUITE = MutationSuite(reference=KERNELS / "dq8ca_reference.wgsl", dispatch="ceil(N / wg_size), M",
                      overrides={"wg_size": "64"}, mutants=LINEAR + QPARAMS,
                      before=BeforeReference(file=KERNELS / "choose_qparams_reference.wgsl", dispatch="ceil(M / 4)",
                                             overrides={}))
