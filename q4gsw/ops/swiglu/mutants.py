"""swiglu's mutation self-test: the simple correct kernel (kernels/swiglu_reference.wgsl) and the bugs a fused
SiLU-multiply author makes (the sign of the exponent, silu without its gate factor, sigmoid saturation handled by a
clamp, gate and up swapped, the 2-D fold, the bound, an f16 path), each an exact text substitution."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import Mutant, MutationSuite

REFERENCE = Path(__file__).parent / "kernels" / "swiglu_reference.wgsl"

CATALOGUE: tuple[Mutant, ...] = (
    Mutant("exp_sign", "exp(g) for exp(-g): sigmoid(-g)",
           (("let e = exp(-g);", "let e = exp(g);"),)),
    Mutant("sigmoid_only", "sigmoid(g) * up: the gate factor of silu = g * sigmoid(g) dropped",
           (("out[i] = g * sigmoid(g) * u;", "out[i] = sigmoid(g) * u;"),)),
    Mutant("gate_up_swapped", "silu applied to up: up * sigmoid(up) * gate",
           (("out[i] = g * sigmoid(g) * u;", "out[i] = u * sigmoid(u) * g;"),)),
    Mutant("exp_clamped", "the exponent clamped to [-16, 16] against overflow: sigmoid of a large |g| off",
           (("let e = exp(-g);", "let e = exp(clamp(-g, -16.0, 16.0));"),)),
    Mutant("fast_reciprocal", "1 / (1 + e) as 1 - e for small e (a series cut after one term)",
           (("return 1.0 / (1.0 + e);", "return select(1.0 / (1.0 + e), 1.0 - e, e < 0.25);"),)),
    Mutant("last_element_dropped", "the bound off by one: the last output never written",
           (("if (i >= params.num_elements) {", "if (i + 1u >= params.num_elements) {"),)),
    Mutant("fold_stride_wg", "the 2-D fold's row stride taken as wg_size instead of num_workgroups.x * wg_size",
           (("let i = gid.x + gid.y * groups.x * wg_size;", "let i = gid.x + gid.y * wg_size;"),)),
    Mutant("up_neighbour", "up read one element on (an off-by-one in the second operand's index, clamped)",
           (("let u = up[i];", "let u = up[min(i + 1u, params.num_elements - 1u)];"),)),
    # quantizeToF16 (core WGSL): an f16 activation path (NVIDIA's compiler removes a pack/unpack round trip).
    Mutant("fp16_output", "the product rounded to fp16 (an f16 activation path)",
           (("out[i] = g * sigmoid(g) * u;", "out[i] = quantizeToF16(g * sigmoid(g) * u);"),)),
)

# A small workgroup for the self-test only: T = ceil(numel / 4) workgroups exceed 65535 from 262141 elements, so a
# 33-row slice of the FFN width folds the dispatch; fold_stride_wg then shows where the second row of workgroups
# cannot reach the last elements (numel > 65535 * 4 + 4; at exactly 65536 workgroups it rewrites the same values and
# is equivalent). The matrix's reference (wg_size 64) folds from 4M elements, the 512-row prefill.
SUITE = MutationSuite(reference=REFERENCE,
                      dispatch="min(ceil(numel / wg_size), max_workgroups_per_dimension), "
                               "ceil(ceil(numel / wg_size) / min(ceil(numel / wg_size), max_workgroups_per_dimension))",
                      overrides={"wg_size": "4"}, mutants=CATALOGUE)
