"""add's mutation self-test: the simple correct kernel (kernels/add_reference.wgsl) and the bugs an elementwise
binary-op author makes (the broadcast operand indexed as if it had out's shape, broadcast dims mixed up, the
fold of a 2-D dispatch, the bound, the sum through fp16), each an exact text substitution in the reference."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import Mutant, MutationSuite

REFERENCE = Path(__file__).parent / "kernels" / "add_reference.wgsl"

CATALOGUE: tuple[Mutant, ...] = (
    Mutant("broadcast_ignored", "b indexed with out's index (the elementwise fast path taken for a broadcast b)",
           (("out[i] = a[ia] + alpha * b[ib];", "out[i] = a[ia] + alpha * b[i];"),)),
    Mutant("broadcast_dim_kept", "a size-1 dim of b not held at 0: b read at out's coordinate there",
           (("ib = ib + select(coord, 0u, nb == 1u) * stride_b;", "ib = ib + coord * stride_b;"),)),
    Mutant("b_strided_as_out", "b's running stride taken from out's sizes (b laid out as if it had out's shape)",
           (("stride_b = stride_b * nb;", "stride_b = stride_b * n;"),)),
    Mutant("subtract", "a - alpha * b (sub's kernel under add's name)",
           (("out[i] = a[ia] + alpha * b[ib];", "out[i] = a[ia] - alpha * b[ib];"),)),
    Mutant("last_element_dropped", "the bound off by one: the last output never written",
           (("if (i >= out_meta.numel) {", "if (i + 1u >= out_meta.numel) {"),)),
    Mutant("fold_stride_wg", "the 2-D fold's row stride taken as wg_size instead of num_workgroups.x * wg_size",
           (("let i = gid.x + gid.y * groups.x * wg_size;", "let i = gid.x + gid.y * wg_size;"),)),
    # quantizeToF16 (core WGSL): an f16 residual stream (NVIDIA's compiler removes a pack/unpack round trip).
    Mutant("fp16_sum", "the sum rounded to fp16 (an f16 activation path)",
           (("out[i] = a[ia] + alpha * b[ib];", "out[i] = quantizeToF16(a[ia] + alpha * b[ib]);"),)),
)

# A small workgroup for the self-test only: T = ceil(numel / 4) workgroups exceed 65535 from numel = 262141, so a
# small config folds the dispatch onto two dimensions; fold_stride_wg shows where the second row of workgroups cannot
# reach the last elements (numel > 65535 * 4 + 4). The matrix's reference (wg_size 64) folds from 4M elements.
SUITE = MutationSuite(reference=REFERENCE,
                      dispatch="min(ceil(numel / wg_size), max_workgroups_per_dimension), "
                               "ceil(ceil(numel / wg_size) / min(ceil(numel / wg_size), max_workgroups_per_dimension))",
                      overrides={"wg_size": "4"}, mutants=CATALOGUE)
