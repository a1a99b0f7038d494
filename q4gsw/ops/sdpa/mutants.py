"""sdpa's mutation self-test (`python -m q4gsw mutants --op sdpa`): the reference chain (update_k, update_v,
attn_weights, softmax, then compute_out, q4gsw's kernels/) and bugs an attention kernel's author makes, each in one
kernel of the chain (Mutant.in_before names it)."""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import BeforeReference, Mutant, MutationSuite

KERNELS = Path(__file__).parent / "kernels"
FOLD = "min(ceil({n} / 64), 65535), ceil(ceil({n} / 64) / 65535)"  # matrix.toml's [kernel.sdpa_ref] dispatches
KV_BITS = {"kv_bits": "kv_bits"}

CHAIN = (
    BeforeReference(KERNELS / "update_cache.wgsl", FOLD.format(n="kv_words"), KV_BITS, "update_k", "update_k"),
    BeforeReference(KERNELS / "update_cache.wgsl", FOLD.format(n="kv_words"), KV_BITS, "update_v", "update_v"),
    BeforeReference(KERNELS / "attn_weights.wgsl", FOLD.format(n="attn_elems"), KV_BITS, "attn_weights",
                    "attn_weights"),
    BeforeReference(KERNELS / "softmax.wgsl", FOLD.format(n="softmax_rows"), {}, "softmax", "softmax"),
)

MUTANTS = (
    Mutant("k_written_a_row_late", "the step's k written numel elements late: S rows past start_pos, one at a "
           "decode step (a cache written at the wrong position; step 0 of a decode from position 0 cannot see it)",
           (("cache[params.dst_offset + word] =", "cache[params.dst_offset + params.numel + word] ="),), "update_k"),
    Mutant("k16_written_a_row_late", "the fp16 path of the same bug: the step's k pairs written S rows late",
           (("cache[(params.dst_offset + i) / 2u] =", "cache[(params.dst_offset + params.numel + i) / 2u] ="),),
           "update_k"),
    Mutant("v_pairs_swapped", "fp16 v written with the pair's halves swapped (element 2i in the high half)",
           (("vec2<f32>(value[i], value[i + 1u])", "vec2<f32>(value[i + 1u], value[i])"),), "update_v"),
    Mutant("causal_off_by_one", "each query also attends the next position (c <= s + input_pos + 1)",
           (("if (c > s + params.input_pos) {", "if (c > s + params.input_pos + 1u) {"),), "attn_weights"),
    Mutant("causal_strict", "the diagonal masked: a query does not attend its own position",
           (("if (c > s + params.input_pos) {", "if (c >= s + params.input_pos) {"),), "attn_weights"),
    Mutant("gqa_head_modulo", "query head h reads kv head h % Hkv instead of h / group",
           (("(c * params.Hkv + h / params.g)", "(c * params.Hkv + h % params.Hkv)"),), "attn_weights"),
    Mutant("no_scale", "logits not scaled by 1/sqrt(D)", (("w[idx] = acc * params.scale;", "w[idx] = acc;"),),
           "attn_weights"),
    Mutant("scale_over_d", "logits scaled by 1/D instead of 1/sqrt(D) (the scale applied twice)",
           (("w[idx] = acc * params.scale;", "w[idx] = acc * params.scale * params.scale;"),), "attn_weights"),
    Mutant("k_read_a_row_late", "the cached k read at row c + 1 (a cache read at the wrong position)",
           (("let k0 = (c * params.Hkv + h / params.g) * params.D;",
             "let k0 = ((c + 1u) * params.Hkv + h / params.g) * params.D;"),), "attn_weights"),
    Mutant("softmax_denominator_plus_one", "softmax divides by sum + 1",
           (("exp(w[base + i] - top) / total;", "exp(w[base + i] - top) / (total + 1.0);"),), "softmax"),
    Mutant("last_position_dropped", "the weighted V sum stops one position short of the context",
           (("for (var c = 0u; c < ctx; c = c + 1u) {", "for (var c = 0u; c + 1u < ctx; c = c + 1u) {"),)),
    Mutant("v_half_swapped", "an fp16 v read from the other half of its word",
           (("return select(pair.x, pair.y, (i & 1u) == 1u);", "return select(pair.y, pair.x, (i & 1u) == 1u);"),)),
)

SUITE = MutationSuite(reference=KERNELS / "compute_out.wgsl", dispatch=FOLD.format(n="out_elems"),
                      overrides=KV_BITS, mutants=MUTANTS, before=CHAIN, stage="compute_out")
