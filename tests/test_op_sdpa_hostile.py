"""Op sdpa offline, a hostile pass: each test here failed against a one-line mutation of the op (golden.py, layout.py,
the shape rules and derived names, matrix.toml's routing `when`s) that test_op_sdpa.py let through."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_op_sdpa import OP, REPO_MATRIX, hand_case, sdpa_config

from q4gsw.matrix.load import load_matrix
from q4gsw.ops import expression_names
from q4gsw.ops.sdpa.golden import error_model
from q4gsw.ops.sdpa.layout import KvCache


def test_an_fp16_cache_holds_the_new_k_rounded_to_fp16_too():
    """hand_case with an fp16 cache: the new k, 2 ln 3, is held as its nearest fp16 kk (2 ln 3 is no fp16 number),
    so the new row's logit is kk / 2 and p1 = e^(kk/2) / (1 + e^(kk/2)); out = (4 (1 - p1), 8 p1, 0, 0). An fp32
    k (4e-5 off) moves out by ~3e-5. The fp32 cpu_reference rounds the same way (within its fp32 roundings)."""
    x, cache = hand_case(np.float16)
    kk = float(np.float16(np.float32(2 * math.log(3))))
    assert abs(kk - 2 * math.log(3)) > 4e-5
    p1 = math.exp(kk / 2) / (1 + math.exp(kk / 2))
    expected = [[4 * (1 - p1), 8 * p1, 0, 0]]
    np.testing.assert_allclose(OP.golden(x, cache), expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(OP.cpu_reference(x, cache), expected, rtol=0, atol=2e-6)


def test_the_fp32_cpu_reference_rounds_the_new_v_into_an_fp16_cache():
    x, cache = hand_case(np.float16)
    x[0, 0, 0] = 0  # p = (1/2, 1/2)
    x[0, 2, 1] = 1 + 2.0**-12  # held as 1: an unrounded v gives 0.5 + 2^-13
    assert OP.cpu_reference(x, cache).tolist() == [[2, 0.5, 0, 0]]


def test_the_scale_is_the_hosts_fp32_one_over_sqrt_d():
    """D = 8: fp32(1/sqrt 8) = 0x3EB504F3, 2.4e-8 relative from the real 1/sqrt 8 (a golden in fp64 1/sqrt(D) would
    be another op than the one the kernels receive)."""
    from q4gsw.ops.sdpa.layout import geometry

    cache = KvCache(k=np.zeros((2, 1, 8), np.float32), v=np.zeros((2, 1, 8), np.float32), start_pos=0)
    scale = geometry(np.zeros((1, 3, 8), np.float32), cache).scale
    assert scale == float(np.array([0x3EB504F3], np.uint32).view(np.float32)[0]) != 1 / math.sqrt(8)


def test_widened_stages_bind_fp32_caches_of_the_fp16_values():
    """STAGE@f32: the fp16 config's caches as fp32 words (4 bytes an element), the same values."""
    config = sdpa_config(head_dim=8, cache_len=6, kv_bits=16)
    x, cache = OP.make_input("normal", config), OP.synthetic_constants(config, 0)
    for stage, index in (("update_k@f32", 0), ("update_v@f32", 0), ("attn_weights@f32", 2), ("compute_out@f32", 1),
                         ("fd_split@f32", 3)):  # the list position (compute_out binds its output, b0, apart)
        words = OP.stage_bindings(stage, x, cache).inputs[index].data
        source = cache.v if stage.startswith(("update_v", "compute_out")) else cache.k
        assert words.dtype == np.uint32 and words.size == 6 * 8, stage
        assert np.array_equal(words.view(np.float32).reshape(6, 1, 8), source.astype(np.float32)), stage


def test_the_derived_names_are_the_hosts_counts():
    """S = 3, Hq 4, Hkv 2, D 8 at start_pos 5 with an fp16 cache: context 8; worked out by hand from layout.py's
    docstring and the kernels' 4x4 tiles."""
    names = expression_names(sdpa_config(seq=3, heads=4, kv_heads=2, head_dim=8, start_pos=5, cache_len=16,
                                         kv_bits=16))
    expected = {"context_len": 8, "group": 2, "kv_numel": 48, "kv_words": 24, "attn_elems": 96, "out_elems": 96,
                "softmax_rows": 12, "qk_tiles": 4 * 1 * 2, "av_tiles": 4 * 1 * 2, "num_splits": 1, "split_len": 8,
                "scale_is_eighth": 0}
    assert {k: names[k] for k in expected} == expected
    names = expression_names(sdpa_config(seq=5, heads=2, kv_heads=1, head_dim=64, start_pos=2, cache_len=8))
    assert (names["kv_words"], names["qk_tiles"], names["av_tiles"], names["scale_is_eighth"]) == (
        320, 2 * 2 * 2, 2 * 2 * 16, 1)


def test_the_attention_weights_over_2_gib_are_refused_at_the_boundary():
    """4 Hq S ctx bytes > 2^31: Hq 4, S = ctx = 11586 needs 2^31 + 70672 bytes; 11585 fits (2^31 - 21012)."""
    def keys(seq: int) -> list[str]:
        return [p.key for p in OP.shape_problems(sdpa_config(seq=seq, heads=4, kv_heads=2, head_dim=8,
                                                             cache_len=seq))]

    assert keys(11586) == ["seq"] and keys(11585) == []


def _first_route(dims: dict[str, int]) -> str:
    """The first kernel of executorch_sdpa's route whose `when` holds on a shader-f16 device with ample limits."""
    from q4gsw.matrix.expressions import evaluate

    spec = load_matrix(REPO_MATRIX).kernel_sets["executorch_sdpa"]
    kernels = {k.name: k for k in spec.kernels}
    names = {**expression_names(sdpa_config(**dims)), "max_workgroups_per_dimension": 65535}
    return next(name for name in spec.route if evaluate(kernels[name].when, names))


@pytest.mark.parametrize(("dims", "route"), [
    ({"head_dim": 128, "start_pos": 5}, "sdpa_fd_reduce"),  # Sdpa.cpp: fd_eligible = D <= kSdpaFdMaxHeadDim (128)
    ({"head_dim": 132, "start_pos": 5}, "sdpa_compute_out"),
    ({"head_dim": 128, "start_pos": 5, "kv_bits": 16}, "sdpa_fd_reduce_kv16"),
    ({"seq": 2, "head_dim": 128, "start_pos": 5}, "sdpa_compute_out"),  # use_fd = fd_eligible && S == 1
    # the k16 streaming geometry needs Hkv == 8 and g == 4 (Sdpa.cpp: Hq 32, Hkv 8, g 4, D 64) and fp16 KV
    ({"seq": 4, "heads": 32, "kv_heads": 8, "head_dim": 64}, "sdpa_compute_out"),
    ({"seq": 4, "heads": 32, "kv_heads": 8, "head_dim": 64, "kv_bits": 16}, "streaming_attention_k16_causal_bound"),
    ({"seq": 4, "heads": 32, "kv_heads": 4, "head_dim": 64, "kv_bits": 16}, "sdpa_compute_out_half"),
    ({"seq": 4, "heads": 32, "kv_heads": 8, "head_dim": 32, "kv_bits": 16}, "sdpa_compute_out_half"),
    ({"seq": 4, "heads": 16, "kv_heads": 8, "head_dim": 128, "kv_bits": 16},
     "streaming_attention_qwen3_k16_causal_bound"),
    ({"seq": 4, "heads": 16, "kv_heads": 4, "head_dim": 128, "kv_bits": 16}, "sdpa_compute_out_half"),
])
def test_the_route_at_each_boundary_of_sdpa_cpp(dims, route):
    assert _first_route({"cache_len": 16, **dims}) == route


def test_the_bound_is_the_docstrings_formula_on_the_hand_case():
    """hand_case by hand (u = 2^-24): p = (1/4, 3/4), logits (0, ln 3) so A = (0, ln 3) and x = (-ln 3, 0); out_0 = 1
    with |v_c0 - out_0| = (3, 1) and sum_c p_c |v_c0| = 1, n = 2 positions, D = 4. worst = gamma_2 (S + |out|) +
    5u |out| + sum_c p_c (gamma_{D+1} A_c + (3 + 2|x_c|) 2u) |v_c0 - out_0|."""
    from q4gsw.ops.error_model import U, gamma

    x, cache = hand_case()
    ln3 = math.log(3)
    moved = 0.25 * (3 + 2 * ln3) * 2 * U * 3 + 0.75 * (gamma(5) * ln3 + 3 * 2 * U) * 1
    expected = gamma(2) * 2 + 5 * U + moved
    assert error_model(x, cache).worst[0, 0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("name", "denom"), [("ramp", 16), ("big_logits", 0.5)])
def test_the_upstream_inputs_are_test_sdpa_pys_ramps(name, denom):
    """ExecuTorch's test_sdpa.py _det_inputs: q[i] = (i % 17 - 8) / denom, k (i % 13 - 6), v (i % 11 - 5) over each
    flat [S, H, D] tensor; denom 16, or 0.5 for mha_biglogit. S 2, Hq 4, Hkv 2, D 8, written element by element."""
    x = OP.make_input(name, sdpa_config(seq=2, heads=4, kv_heads=2, head_dim=8))
    for i in range(2 * 4 * 8):
        s, h, d = i // 32, i // 8 % 4, i % 8
        assert x[s, h, d] == (i % 17 - 8) / denom
    for i in range(2 * 2 * 8):
        s, h, d = i // 16, i // 8 % 2, i % 8
        assert (x[s, 4 + h, d], x[s, 6 + h, d]) == ((i % 13 - 6) / denom, (i % 11 - 5) / denom)


def test_the_output_is_s_rows_of_heads_times_head_dim():
    assert OP.output_shape(sdpa_config(seq=3, heads=4, kv_heads=2, head_dim=8)) == (3, 32)


def test_the_error_models_context_and_fp16_estimate():
    """K is the longest context (start_pos + S); the estimate, like the bound, admits the other fp16 neighbour of
    an inexact new v everywhere (a kernel that always rounds the other way errs by p_new ulp)."""
    config = sdpa_config(seq=3, heads=2, kv_heads=1, head_dim=8, start_pos=4, cache_len=9)
    assert error_model(OP.make_input("normal", config), OP.synthetic_constants(config, 0)).K == 7
    x, cache = hand_case(np.float16)
    x[0, 0, 0] = 0
    x[0, 2, 1] = 1 + 2.0**-12
    assert error_model(x, cache).est[0, 1] >= 0.5 * 2.0**-10


@pytest.mark.parametrize(("dims", "variants"), [
    ({"start_pos": 5}, {"sdpa_fd_reduce", "sdpa_compute_out"}),
    ({"start_pos": 5, "kv_bits": 16}, {"sdpa_fd_reduce_kv16", "sdpa_compute_out_half", "sdpa_fd_reduce_kv16_fallback",
                                       "sdpa_compute_out_kv16_fallback"}),
    ({"seq": 4}, {"sdpa_compute_out"}),
    ({"seq": 4, "heads": 32, "kv_heads": 8, "head_dim": 64, "kv_bits": 16},
     {"streaming_attention_k16_causal_bound", "sdpa_compute_out_half", "sdpa_compute_out_kv16_fallback"}),
])
def test_all_variants_are_only_the_routes_of_the_configs_kv_dtype(dims, variants):
    """--all-variants runs every kernel whose `when` holds: an fp32-KV config never runs a half or kv16 fallback
    variant (they would be the fp32 kernels again, under an fp16 name)."""
    from q4gsw.matrix.expressions import evaluate

    spec = load_matrix(REPO_MATRIX).kernel_sets["executorch_sdpa"]
    names = {**expression_names(sdpa_config(**{"cache_len": 16, **dims})), "max_workgroups_per_dimension": 65535}
    assert {k.name for k in spec.kernels if evaluate(k.when, names)} == variants


def _buggy_attention(x: np.ndarray, cache: KvCache, bug: str) -> np.ndarray:
    """fp64 attention with one realistic kernel bug, written here apart from golden.py: `scale` 1/D for 1/sqrt(D),
    `causal+1` each query attends one more position, `strict` not its own, `gqa` kv head h % Hkv, `k_late` and
    `v_late` the step's k or v written one row past start_pos (the cache then read at the right rows)."""
    kv_heads = cache.k.shape[1]
    seq, width, head_dim = x.shape
    heads, pos = width - 2 * kv_heads, cache.start_pos
    k_cache, v_cache = cache.k.copy(), cache.v.copy()
    k_at, v_at = pos + (bug == "k_late"), pos + (bug == "v_late")
    k_cache[k_at:k_at + seq] = x[:, heads:heads + kv_heads][:len(k_cache) - k_at]
    v_cache[v_at:v_at + seq] = x[:, heads + kv_heads:][:len(v_cache) - v_at]
    ctx = min(pos + seq + (bug == "causal+1"), len(k_cache))
    kv_of = np.arange(heads) % kv_heads if bug == "gqa" else np.arange(heads) // (heads // kv_heads)
    k, v = k_cache[:ctx, kv_of].astype(np.float64), v_cache[:ctx, kv_of].astype(np.float64)
    scale = 1 / head_dim if bug == "scale" else float(np.float32(1) / np.sqrt(np.float32(head_dim)))
    logits = scale * np.einsum("shd,chd->hsc", x[:, :heads].astype(np.float64), k)
    last = pos + np.arange(seq) + (bug == "causal+1") - (bug == "strict")
    logits = np.where(np.arange(ctx)[None, None, :] > last[None, :, None], -np.inf, logits)
    e = np.nan_to_num(np.exp(logits - logits.max(axis=2, keepdims=True)))  # strict: query 0 at position 0 sees none
    p = e / np.maximum(e.sum(axis=2, keepdims=True), 1e-300)
    return np.einsum("hsc,chd->shd", p, v).reshape(seq, -1)


@pytest.mark.parametrize("name", ["sdpa_tiny_f16", "sdpa_decode_127_f16", "sdpa_decode_4095_f16", "sdpa_tiny_decode"])
def test_the_fp16_kv_tolerances_fail_realistic_bugs(name):
    """Each bug moves some output by more than the config's atol (the fp16 configs' atol admits the other fp16
    neighbour of every new value, so it is the loosest): >= 50x measured in fp64. At decode_4095 the context ends at
    the cache's last row, so attending one position more reads past the cache (undefined, not simulated here):
    sdpa_decode_127 and sdpa_tiny_decode check that bound."""
    config = load_matrix(REPO_MATRIX).config(name)
    cache = OP.synthetic_constants(config, config.weight_seed)
    bugs = ("scale", "causal+1", "strict", "gqa", "k_late", "v_late")
    at_cache_end = config.dims["start_pos"] + config.dims["seq"] == config.dims["cache_len"]
    for bug in (b for b in bugs if not (at_cache_end and b == "causal+1")):
        moved = max(np.abs(_buggy_attention(x, cache, bug) - OP.golden(x, cache)).max()
                    for x in (OP.make_input(i, config) for i in config.inputs))
        assert moved > 50 * config.tolerance.atol, (bug, moved)
