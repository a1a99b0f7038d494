"""Op sdpa offline: the golden on hand-computed attention (the cache write, the causal bound, grouped-query heads,
the fp16 cache's rounding), the stages' buffers and params in ExecuTorch's layout, the error model against an fp32
computation, the shape rules and the matrix's sdpa kernels and configs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import expression_names, op_for
from q4gsw.ops.sdpa.golden import error_model
from q4gsw.ops.sdpa.layout import KvCache

OP = op_for("sdpa")
REPO_MATRIX = "matrix.toml"


def sdpa_config(seq: int = 1, heads: int = 1, kv_heads: int = 1, head_dim: int = 4, start_pos: int = 0,
                cache_len: int = 8, kv_bits: int = 32, inputs: tuple[str, ...] = ("normal",)) -> Config:
    dims = {"seq": seq, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "start_pos": start_pos,
            "cache_len": cache_len, "kv_bits": kv_bits}
    return Config(name="t", dims=dims, tier="required", suite="sdpa-edges", inputs=inputs, weights="normal",
                  weight_seed=0, timeout_s=60, tolerance=Tolerance(atol=1e-5, rtol=1e-5, justification="t"), op="sdpa")


def hand_case(kv_dtype: type = np.float32) -> tuple[np.ndarray, KvCache]:
    """One query, one head, D = 4, start_pos 1: logits 0 (cached row 0) and ln 3 (the new row 1: q.k = 2 ln 3 times
    scale 1/2), so p = (1/4, 3/4) and out = v0 / 4 + 3 v1 / 4 = (1, 6, 0, 0). Row 2 lies past the context."""
    k = np.zeros((3, 1, 4), kv_dtype)
    v = np.zeros((3, 1, 4), kv_dtype)
    v[0, 0, 0] = 4
    k[2], v[2] = 100, 100
    x = np.zeros((1, 3, 4), np.float32)
    x[0, 0, 0] = 1  # q
    x[0, 1, 0] = 2 * math.log(3)  # k of the new row
    x[0, 2, 1] = 8  # v of the new row
    return x, KvCache(k=k, v=v, start_pos=1)


def test_golden_is_the_hand_computed_attention_after_the_cache_write():
    """Within 1e-7: x holds 2 ln 3 rounded to fp32 (3e-8 off), which moves p by at most p (1 - p) 1.7e-8."""
    x, cache = hand_case()
    np.testing.assert_allclose(OP.golden(x, cache), [[1, 6, 0, 0]], rtol=0, atol=1e-7)


def test_golden_is_causal_within_a_prefill_step():
    """S = 2 at start_pos 0, q = 0 (equal logits): query 0 sees only row 0 (out = v0), query 1 rows 0 and 1 (their
    mean); rows 2.. hold 100s that any read past the bound would show."""
    x = np.zeros((2, 3, 4), np.float32)
    x[0, 2], x[1, 2] = [2, 0, 0, 0], [0, 4, 0, 0]
    cache = KvCache(k=np.full((4, 1, 4), 100, np.float32), v=np.full((4, 1, 4), 100, np.float32), start_pos=0)
    np.testing.assert_allclose(OP.golden(x, cache), [[2, 0, 0, 0], [1, 2, 0, 0]], atol=1e-12)


def test_golden_gives_query_head_h_the_kv_head_h_over_group():
    """Hq 4, Hkv 2 (group 2): heads 0, 1 read kv head 0 (v = 1), heads 2, 3 kv head 1 (v = 2); one position."""
    x = np.zeros((1, 8, 4), np.float32)
    x[0, 6] = 1  # v of kv head 0
    x[0, 7] = 2  # v of kv head 1
    cache = KvCache(k=np.zeros((2, 2, 4), np.float32), v=np.zeros((2, 2, 4), np.float32), start_pos=0)
    np.testing.assert_allclose(OP.golden(x, cache).reshape(4, 4), [[1] * 4, [1] * 4, [2] * 4, [2] * 4], atol=0)


def test_an_fp16_cache_holds_the_new_values_rounded_to_fp16():
    """1 + 2^-12 is no fp16 value (the spacing at 1 is 2^-10): the cache holds 1. q = 0: p = (1/2, 1/2)."""
    x, cache = hand_case(np.float16)
    x[0, 0, 0] = 0
    x[0, 2, 1] = 1 + 2.0**-12
    assert OP.golden(x, cache).tolist() == [[2, 0.5, 0, 0]]


def test_the_error_model_bounds_an_fp32_computation_and_its_step_is_the_off_by_one():
    x, cache = hand_case()
    model = error_model(x, cache)
    np.testing.assert_allclose(model.step, [[3, 6, 0, 0]], atol=1e-12)  # 3/4 |v1 - out| / (1/4)
    config = sdpa_config(seq=5, heads=4, kv_heads=2, head_dim=16, start_pos=11, cache_len=20)
    for name in ("normal", "outliers"):
        x = OP.make_input(name, config)
        constants = OP.synthetic_constants(config, 3)
        g = OP.golden(x, constants)
        error = np.abs(OP.cpu_reference(x, constants) - g)
        model = error_model(x, constants)
        assert (error <= model.worst).all() and (model.est <= model.worst).all() and (model.est > 0).all()


def test_the_fp16_model_admits_the_other_neighbour_of_each_new_value():
    """A kernel that rounds the new v to the other fp16 neighbour (legal in WGSL) errs by p_new * ulp: within worst."""
    x, cache = hand_case(np.float16)
    x[0, 0, 0] = 0  # p = (1/2, 1/2)
    x[0, 2, 1] = 1 + 2.0**-12  # nearest fp16: 1; the other neighbour: 1 + 2^-10
    model = error_model(x, cache)
    assert model.worst[0, 1] >= 0.5 * 2.0**-10 > model.worst[0, 2]


def test_stage_bindings_are_executorchs_layout():
    config = sdpa_config(seq=2, heads=4, kv_heads=2, head_dim=8, start_pos=3, cache_len=6)
    x, cache = OP.make_input("normal", config), OP.synthetic_constants(config, 0)
    update = OP.stage_bindings("update_v", x, cache)
    assert update.output_index is None and [b.index for b in update.inputs] == [0, 1, 2]
    assert update.inputs[0].shared == "v_cache" and update.inputs[0].kind == "storage"
    assert np.array_equal(update.inputs[1].data, x[:, 6:8])  # v: the last kv_heads heads of x
    assert update.inputs[2].data.tolist() == [2 * 2 * 8, 3 * 2 * 8, 6 * 2 * 8, 0]
    weights = OP.stage_bindings("attn_weights", x, cache)
    assert weights.inputs[0].data.size == 4 * 2 * 5 and weights.inputs[2].shared == "k_cache"
    assert weights.inputs[3].data.tolist() == [2, 4, 2, 8, 5, 3, 2, 0x3EB504F3]  # scale fp32(1/sqrt 8)
    out = OP.stage_bindings("compute_out", x, cache)
    assert out.output_index == 0 and out.output_shape == (2, 32)
    assert [b.shared for b in out.inputs[:2]] == ["attn_softmax", "v_cache"]
    assert OP.stage_bindings("softmax", x, cache).inputs[2].data.tolist() == [8, 5, 0, 0]


def test_fp16_caches_bind_two_bytes_an_element():
    config = sdpa_config(head_dim=8, cache_len=6, kv_bits=16)
    cache = OP.synthetic_constants(config, 0)
    assert cache.k.dtype == np.float16
    words = OP.stage_bindings("update_k", OP.make_input("normal", config), cache).inputs[0].data
    assert words.dtype == np.uint32 and words.nbytes == 6 * 8 * 2
    assert np.array_equal(words.view(np.float16).reshape(6, 1, 8), cache.k)


@pytest.mark.parametrize(("context", "splits", "split_len"), [(1, 1, 1), (64, 1, 64), (65, 2, 33), (4096, 64, 64),
                                                              (10000, 128, 79)])
def test_flash_decoding_splits_as_the_host_does(context, splits, split_len):
    """SdpaFdDecode.cpp: num_splits = min(ceil(ctx / 64), 128), split_len = ceil(ctx / num_splits)."""
    config = sdpa_config(start_pos=context - 1, cache_len=context)
    names = expression_names(config)
    assert (names["num_splits"], names["split_len"], names["context_len"]) == (splits, split_len, context)
    x, cache = OP.make_input("normal", config), OP.synthetic_constants(config, 0)
    params = OP.stage_bindings("fd_split", x, cache).inputs[5].data.tolist()
    assert params[5:7] == [splits, split_len] and params[3] == context


@pytest.mark.parametrize(("dims", "key"), [({"heads": 6, "kv_heads": 4}, "kv_heads"), ({"head_dim": 6}, "head_dim"),
                                           ({"start_pos": 8}, "start_pos"), ({"kv_bits": 8}, "kv_bits")])
def test_shape_problems_name_the_key(dims, key):
    base = {"heads": 4, "kv_heads": 2, "head_dim": 8, "start_pos": 0, "cache_len": 8}
    config = sdpa_config(**{**base, **dims})
    assert [p.key for p in OP.shape_problems(config)] == [key]


def test_outlier_tokens_have_large_q_and_k_but_plain_v():
    config = sdpa_config(seq=8, heads=2, kv_heads=1, head_dim=8)
    normal, outliers = OP.make_input("normal", config), OP.make_input("outliers", config)
    ratio = outliers / normal
    np.testing.assert_allclose(ratio[[0, 7], :3], 6, rtol=1e-6)
    assert (ratio[1:7] == 1).all() and (ratio[:, 3] == 1).all()


def test_the_matrix_chains_the_materialised_route_in_order():
    kernel = next(k for k in load_matrix(REPO_MATRIX).kernels if k.name == "sdpa_ref")
    assert [k.stage for k in kernel.chain()] == ["update_k", "update_v", "attn_weights", "softmax"]
    assert kernel.stage == "compute_out"


def _u32(array: np.ndarray) -> list[int]:
    """An array's bytes as little-endian u32 words, computed here independently of the op's packing."""
    return np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype="<u4").tolist()


def test_every_stages_buffers_and_params_follow_the_layout_in_the_module_docstring():
    """S = 2, Hq = 4, Hkv = 2, D = 8, start_pos 3, cache 6: context 5, group 2, one FlashDecoding split of 5,
    scale fp32(1/sqrt 8) = 0x3EB504F3; each stage's bindings (index, kind, shared name, element count) and Params
    worked out from the docstring's table."""
    config = sdpa_config(seq=2, heads=4, kv_heads=2, head_dim=8, start_pos=3, cache_len=6)
    x, cache = OP.make_input("normal", config), OP.synthetic_constants(config, 0)
    q, k, v = (np.ascontiguousarray(x[:, a:b]) for a, b in ((0, 4), (4, 6), (6, 8)))
    scale = 0x3EB504F3
    cache_words = {"k_cache": _u32(cache.k), "v_cache": _u32(cache.v)}
    expected = {  # stage: (output index, [(index, kind, shared, size, data or None for zeros)])
        "update_k": (None, [(0, "storage", "k_cache", 96, cache_words["k_cache"]), (1, "read-only-storage", "", 32, k),
                            (2, "uniform", "", 4, [32, 48, 96, 0])]),
        "update_v": (None, [(0, "storage", "v_cache", 96, cache_words["v_cache"]), (1, "read-only-storage", "", 32, v),
                            (2, "uniform", "", 4, [32, 48, 96, 0])]),
        "attn_weights": (None, [(0, "storage", "attn_weights", 40, None), (1, "read-only-storage", "", 64, q),
                                (2, "read-only-storage", "k_cache", 96, cache_words["k_cache"]),
                                (3, "uniform", "", 8, [2, 4, 2, 8, 5, 3, 2, scale])]),
        "softmax": (None, [(0, "storage", "attn_softmax", 40, None), (1, "read-only-storage", "attn_weights", 40, None),
                           (2, "uniform", "", 4, [8, 5, 0, 0])]),
        "compute_out": (0, [(1, "read-only-storage", "attn_softmax", 40, None),
                            (2, "read-only-storage", "v_cache", 96, cache_words["v_cache"]),
                            (3, "uniform", "", 8, [2, 4, 2, 8, 5, 2, 0, 0])]),
        "fd_split": (None, [(0, "storage", "part_o", 4 * 128 * 8, None), (1, "storage", "part_ml", 4 * 128 * 2, None),
                            (2, "read-only-storage", "", 64, q),
                            (3, "read-only-storage", "k_cache", 96, cache_words["k_cache"]),
                            (4, "read-only-storage", "v_cache", 96, cache_words["v_cache"]),
                            (5, "uniform", "", 8, [0, 2, 8, 5, 2, 1, 5, scale])]),
        "fd_reduce": (0, [(1, "read-only-storage", "part_o", 4 * 128 * 8, None),
                          (2, "read-only-storage", "part_ml", 4 * 128 * 2, None), (3, "uniform", "", 4, [8, 1, 0, 0])]),
        "streaming": (0, [(1, "read-only-storage", "", 64, q),
                          (2, "read-only-storage", "k_cache", 96, cache_words["k_cache"]),
                          (3, "read-only-storage", "v_cache", 96, cache_words["v_cache"]),
                          (4, "uniform", "", 12, [2, 5, 3, 8, 2, 4, 2, 8, 2, 0, 0, 0])]),
    }
    for stage, (output_index, bindings) in expected.items():
        got = OP.stage_bindings(stage, x, cache)
        assert got.output_index == output_index, stage
        assert got.output_shape == ((2, 32) if output_index is not None else ()), stage
        assert [(b.index, b.kind, b.shared, b.data.size) for b in got.inputs] == [b[:4] for b in bindings], stage
        for binding, (*_, data) in zip(got.inputs, bindings, strict=True):
            if data is None:
                assert binding.data.dtype == np.float32 and not binding.data.any(), (stage, binding.index)
            elif isinstance(data, list):
                assert binding.data.dtype == np.uint32 and binding.data.tolist() == data, (stage, binding.index)
            else:
                assert binding.data.dtype == np.float32 and np.array_equal(binding.data, data), (stage, binding.index)


def test_the_geometry_of_a_step():
    from q4gsw.ops.sdpa.layout import geometry, split_x

    x = np.zeros((3, 4 + 2 * 2, 16), np.float32)
    g = geometry(x, KvCache(k=np.zeros((70, 2, 16), np.float16), v=np.zeros((70, 2, 16), np.float16), start_pos=62))
    assert (g.seq, g.heads, g.kv_heads, g.head_dim, g.start_pos, g.cache_len) == (3, 4, 2, 16, 62, 70)
    assert (g.context_len, g.group, g.num_splits, g.split_len) == (65, 2, 2, 33)
    assert g.scale == float(np.float32(0.25))
    assert KvCache(k=np.zeros((70, 2, 16), np.float16), v=np.zeros((1,)), start_pos=0).kv_bits == 16
    with pytest.raises(ValueError, match=r"^x has shape \(3, 8, 16\); sdpa expects \[S, 4 \+ 2 \* 3, D\]$"):
        split_x(x, 4, 3)
    with pytest.raises(ValueError, match="sdpa expects"):
        split_x(np.zeros((8, 16), np.float32), 4, 2)


def _adapter(name: str, f16: bool, storage: int = 32768):
    from q4gsw.matrix.values import AdapterInfo

    return AdapterInfo(name=name, vendor="test", device_type="DiscreteGPU", api="Vulkan", driver="", webgpu="dawn",
                       features=("shader-f16",) if f16 else (),
                       limits={"max-compute-invocations-per-workgroup": 256,
                               "max-compute-workgroups-per-dimension": 65535,
                               "max-compute-workgroup-storage-size": storage, "max-compute-workgroup-size-x": 256})


F16, NO_F16, SMALL_STORAGE = _adapter("f16", True), _adapter("no f16", False), _adapter("8 KiB", True, 8192)
SDPA_ROUTES = {  # config -> the route on (shader-f16, no shader-f16, shader-f16 with 8 KiB of workgroup storage)
    "sdpa_decode_127": ("sdpa_fd_reduce",) * 3,  # S == 1, D <= 128: FlashDecoding
    "sdpa_prefill_512": ("sdpa_compute_out",) * 3,
    "sdpa_gqa31_decode": ("sdpa_compute_out",) * 3,  # S = 2: no FlashDecoding
    "sdpa_decode_127_f16": ("sdpa_fd_reduce_kv16", "sdpa_fd_reduce_kv16_fallback", "sdpa_fd_reduce_kv16"),
    "sdpa_prefill_128_f16": ("streaming_attention_k16_causal_bound", "sdpa_compute_out_kv16_fallback",
                             "sdpa_compute_out_half"),  # the streaming kernel needs 14720 bytes of storage
    "sdpa_qwen3_prefill": ("streaming_attention_qwen3_k16_causal_bound", "sdpa_compute_out_kv16_fallback",
                           "sdpa_compute_out_half"),
}


def test_the_kernel_set_routes_as_sdpa_cpp():
    """Sdpa.cpp at cff6f4dd for static shapes: the streaming k16 kernels for their fp16-KV geometries on devices with
    shader-f16 and the storage, FlashDecoding for decode, else the materialised route; an fp16-KV model without
    shader-f16 runs the fp32 kernels on fp32 caches (WebGPUGraph.cpp's fail-closed kv_f16_)."""
    from q4gsw.cases import build_selection

    matrix = load_matrix(REPO_MATRIX)
    spec = matrix.kernel_sets["executorch_sdpa"]
    for column, adapter in enumerate((F16, NO_F16, SMALL_STORAGE)):
        selection = build_selection(matrix, "native-dawn", names=tuple(SDPA_ROUTES), kernels=spec.kernels,
                                    route={"sdpa": spec.route}).routed(adapter)
        got = {c.config.name: c.routed for c in selection.cases}
        assert got == {name: routes[column] for name, routes in SDPA_ROUTES.items()}, adapter.name


def test_each_mutant_edits_one_kernel_of_the_chain():
    """A mutant's edits match its kernel exactly once (mutant_sources raises otherwise) and change it; the chain of
    every mutant kernel is the reference chain, in dispatch order, with only the named kernel edited."""
    from q4gsw.commands.mutants import mutant_kernels, mutant_sources

    suite = OP.mutation_suite()
    sources = mutant_sources(op_name="sdpa")
    texts = {b.name: b.file.read_text() for b in suite.chain}
    for mutant in suite.mutants:
        edited = mutant.in_before or None
        assert sources[mutant.name] != (texts[edited] if edited else suite.reference.read_text()), mutant.name
    kernels = {k.name: k for k in mutant_kernels(op_name="sdpa")}
    reference = kernels.pop("reference")
    assert [k.stage for k in reference.chain()] == ["update_k", "update_v", "attn_weights", "softmax"]
    late = kernels["k_written_a_row_late"]
    assert [k.text == r.text for k, r in zip(late.chain(), reference.chain(), strict=True)] == [False, True, True, True]
    assert late.text == reference.text and kernels["last_position_dropped"].chain()[0].text == reference.chain()[0].text

