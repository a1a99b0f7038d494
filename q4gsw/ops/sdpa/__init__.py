"""sdpa: one step of llama::sdpa_with_kv_cache: write the step's k and v into the KV caches at start_pos, then
causal scaled dot-product attention of q over the cache positions 0 .. start_pos + s (grouped-query: query head h
reads kv head h // (heads / kv_heads)), scale 1/sqrt(head_dim).

ExecuTorch's WebGPU backend runs it as a sequence of dispatches sharing buffers (runtime/ops/sdpa/Sdpa.cpp):
update_cache for K and for V, then one route: the materialised one (sdpa_compute_attn_weights, sdpa_softmax,
sdpa_compute_out), FlashDecoding (sdpa_fd_split, sdpa_fd_reduce) when seq == 1 and head_dim <= 128, or
streaming_attention_k16_causal_bound for the Llama f16-KV geometry on a shader-f16 device. Each is a `stage` of
this op (layout.STAGES) and a matrix kernel is the stage whose output is compared, after its chain.

x [seq, heads + 2 kv_heads, head_dim] = q ‖ k ‖ v along the heads axis (a fused QKV projection's layout). The
constants are the caches before the step, [cache_len, kv_heads, head_dim] each, synthetic (seeded normal values,
every row filled, so a kernel that reads past the causal bound or the context reads numbers, not zeros) and held
by the fixture; plus start_pos. The KV dtype is the dim kv_bits: 32 (fp32 caches) or 16 (fp16 caches, each value
two bytes; ExecuTorch's half variants bind them as array<f16>, which needs shader-f16, q4gsw's reference kernels as
u32 pairs through pack2x16float / unpack2x16float, which every adapter runs).

No export recipe: the .pte of a model with sdpa_with_kv_cache holds the caches as mutable buffers initialized to
zeros, and its other inputs are activations; nothing the kernels read comes from the .pte (the Llama recipe's
cache and geometry are the dims). The golden and the error model: golden.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance
from q4gsw.ops.base import Bindings, MutationSuite, Op, ShapeProblem
from q4gsw.ops.sdpa.golden import error_model, golden
from q4gsw.ops.sdpa.layout import FD_MAX_SPLITS, FD_SPLIT_TILE, STAGES, KvCache, split_x, stage_bindings

K_FILE, V_FILE = "k_cache.npy", "v_cache.npy"
MAX_BINDING_BYTES = 2**31
OUTLIER_EVERY = 7  # outliers: every 7th token (token 0 included) has q and k 6x larger: near one-hot softmax rows
OUTLIER_SCALE = 6.0


def _ramp(n: int, mod: int, off: int, denom: float) -> np.ndarray:
    return (((np.arange(n) % mod).astype(np.float32) - np.float32(off)) / np.float32(denom)).astype(np.float32)


def upstream_ramp(seq: int, heads: int, kv_heads: int, head_dim: int, denom: float) -> np.ndarray:
    """ExecuTorch's test_sdpa.py inputs: q, k, v the ramps ((i % 17) - 8, (i % 13) - 6, (i % 11) - 5) / denom over
    each tensor's elements (exact in fp32); denom 16 (`ramp`) or 0.5 (`big_logits`: its mha_biglogit, peak scaled
    logit ~177, which overflows a softmax that forgets to subtract the row max)."""
    q = _ramp(seq * heads * head_dim, 17, 8, denom).reshape(seq, heads, head_dim)
    k = _ramp(seq * kv_heads * head_dim, 13, 6, denom).reshape(seq, kv_heads, head_dim)
    v = _ramp(seq * kv_heads * head_dim, 11, 5, denom).reshape(seq, kv_heads, head_dim)
    return np.concatenate([q, k, v], axis=1)


class Sdpa(Op):
    name = "sdpa"
    operator = "sdpa_with_kv_cache.default"  # the Vulkan delegate's name of llama::sdpa_with_kv_cache (docs/layer.md)
    executorch_folder = "backends/webgpu/runtime/ops/sdpa"
    constant_files = (K_FILE, V_FILE)
    input_names = ("normal", "outliers", "ramp", "big_logits")
    weight_names = ("normal",)  # the caches' values: seeded standard normal
    stages = STAGES
    recipe = "synthetic KV cache"
    dims = (Dim("seq", "tokens of this step (S): 1 for a decode step, the prompt length for a prefill"),
            Dim("heads", "query heads (Hq)"), Dim("kv_heads", "key/value heads (Hkv), dividing heads"),
            Dim("head_dim", "head dimension (D), a multiple of 4"),
            Dim("start_pos", "cache position before this step: the step writes rows start_pos .. start_pos + seq - 1",
                0),
            Dim("cache_len", "the caches' rows (the model's max context)"),
            Dim("kv_bits", "the caches' element width: 32 (fp32) or 16 (fp16)", 16))

    def derived_names(self, dims: Mapping[str, int]) -> dict[str, int]:
        """Names the kernels' expressions use: the host's context length, group, element and tile counts."""
        S, H, Hkv, D = dims["seq"], dims["heads"], dims["kv_heads"], dims["head_dim"]
        ctx = dims["start_pos"] + S
        splits = min(math.ceil(ctx / FD_SPLIT_TILE), FD_MAX_SPLITS)
        return {"context_len": ctx, "group": H // max(Hkv, 1), "kv_numel": S * Hkv * D,
                "kv_words": S * Hkv * D * dims["kv_bits"] // 32, "attn_elems": H * S * ctx, "out_elems": S * H * D,
                "softmax_rows": H * S, "qk_tiles": H * math.ceil(S / 4) * math.ceil(ctx / 4),
                "av_tiles": H * math.ceil(S / 4) * math.ceil(D / 4), "num_splits": splits,
                "split_len": math.ceil(ctx / splits), "scale_is_eighth": int(D == 64)}

    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        d = config.dims
        problems = []
        if d["heads"] % d["kv_heads"]:
            problems.append(ShapeProblem("kv_heads", f"heads={d['heads']} is not a multiple of kv_heads="
                                         f"{d['kv_heads']}", "grouped-query attention needs heads % kv_heads == 0"))
        if d["head_dim"] % 4:
            problems.append(ShapeProblem("head_dim", f"head_dim={d['head_dim']} is not a multiple of 4",
                                         "ExecuTorch's host reads D as vec4: use a multiple of 4"))
        if d["start_pos"] + d["seq"] > d["cache_len"]:
            problems.append(ShapeProblem("start_pos", f"start_pos + seq = {d['start_pos'] + d['seq']} is over "
                                         f"cache_len={d['cache_len']}", "lower start_pos or seq, or raise cache_len"))
        if d["kv_bits"] not in (16, 32):
            problems.append(ShapeProblem("kv_bits", f"kv_bits={d['kv_bits']}", "write 32 (fp32 KV) or 16 (fp16 KV)"))
        attn = 4 * d["heads"] * d["seq"] * (d["start_pos"] + d["seq"])
        if attn > MAX_BINDING_BYTES:
            problems.append(ShapeProblem("seq", f"the materialised attention weights need {attn / 2**30:.1f} GiB",
                                         "no adapter binds more than 2 GiB: use a shorter step"))
        return problems

    def shape_text(self, dims: Mapping[str, int]) -> str:
        return (f"S={dims['seq']} pos={dims['start_pos']} H={dims['heads']}/{dims['kv_heads']} D={dims['head_dim']} "
                f"cache={dims['cache_len']} kv=f{dims['kv_bits']}")

    def make_input(self, name: str, config: Config) -> np.ndarray:
        d = config.dims
        if name in ("ramp", "big_logits"):
            return upstream_ramp(d["seq"], d["heads"], d["kv_heads"], d["head_dim"], 16.0 if name == "ramp" else 0.5)
        rng = np.random.default_rng([config.weight_seed, 1])  # outliers: normal's values, its outlier tokens scaled
        x = rng.standard_normal((d["seq"], d["heads"] + 2 * d["kv_heads"], d["head_dim"])).astype(np.float32)
        if name == "outliers":
            x[::OUTLIER_EVERY, :d["heads"] + d["kv_heads"]] *= np.float32(OUTLIER_SCALE)
        return x

    def output_shape(self, config: Config) -> tuple[int, ...]:
        return (config.dims["seq"], config.dims["heads"] * config.dims["head_dim"])

    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        return Tolerance(atol=2e-3, rtol=2e-3, justification="bench sanity check: an fp16 cache's rounding of the "
                         "new rows (2^-10 relative) with margin", source="bench")

    def flops(self, config: Config) -> int:
        d = config.dims
        return 4 * d["heads"] * d["seq"] * (d["start_pos"] + d["seq"]) * d["head_dim"]

    def bytes_moved(self, config: Config) -> int:
        d = config.dims
        cache = 2 * (d["start_pos"] + d["seq"]) * d["kv_heads"] * d["head_dim"] * d["kv_bits"] // 8
        return cache + 4 * d["seq"] * (2 * d["heads"] + 2 * d["kv_heads"]) * d["head_dim"]

    def constants_to_files(self, constants: KvCache) -> dict[str, np.ndarray]:
        return {K_FILE: constants.k, V_FILE: constants.v}

    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> KvCache:
        return KvCache(k=files[K_FILE], v=files[V_FILE], start_pos=config.dims["start_pos"])

    def synthetic_constants(self, config: Config, seed: int) -> KvCache:
        """Seeded standard-normal caches of every row, in the caches' dtype (fp16: rounded to nearest)."""
        d = config.dims
        dtype = np.float16 if d["kv_bits"] == 16 else np.float32
        rng = np.random.default_rng([seed, 0])
        shape = (d["cache_len"], d["kv_heads"], d["head_dim"])
        return KvCache(k=rng.standard_normal(shape).astype(dtype), v=rng.standard_normal(shape).astype(dtype),
                       start_pos=d["start_pos"])

    def golden(self, x: np.ndarray, constants: KvCache,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return golden(x, constants)

    def cpu_reference(self, x: np.ndarray, constants: KvCache) -> np.ndarray:
        """fp32 numpy: the cache write, then softmax(q k^T * scale + causal mask) v per head."""
        kv_heads, D = constants.k.shape[1:]
        q, k, v = split_x(x, x.shape[1] - 2 * kv_heads, kv_heads)
        S, pos = x.shape[0], constants.start_pos
        kc, vc = constants.k.astype(np.float32), constants.v.astype(np.float32)
        kc[pos:pos + S], vc[pos:pos + S] = k.astype(constants.k.dtype), v.astype(constants.v.dtype)
        group = q.shape[1] // kv_heads
        kr, vr = np.repeat(kc[:pos + S], group, axis=1), np.repeat(vc[:pos + S], group, axis=1)
        logits = np.einsum("shd,chd->hsc", q, kr) * np.float32(1 / math.sqrt(D))
        logits = np.where(np.arange(pos + S)[None, None, :] > (pos + np.arange(S))[None, :, None], -np.inf, logits)
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        p = (e / e.sum(axis=2, keepdims=True)).astype(np.float32)
        return np.einsum("hsc,chd->shd", p, vr).reshape(S, -1).astype(np.float32)

    def error_model(self, x: np.ndarray, constants: KvCache) -> Any:
        return error_model(x, constants)

    def bindings(self, x: np.ndarray, constants: KvCache, chained: bool = False) -> Bindings:
        """The stage under test of a kernel without `stage` (none: every sdpa kernel names one): compute_out."""
        return stage_bindings("compute_out", x, constants)

    def stage_bindings(self, stage: str, x: np.ndarray, constants: KvCache) -> Bindings:
        return stage_bindings(stage, x, constants)

    def mutation_suite(self) -> MutationSuite:
        from q4gsw.ops.sdpa.mutants import SUITE

        return SUITE

    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        rng = np.random.default_rng(0)
        return (rng.standard_normal((1, 4, 4)).astype(np.float32),
                KvCache(k=np.zeros((4, 1, 4), np.float32), v=np.zeros((4, 1, 4), np.float32), start_pos=0))
