"""sdpa's buffers: the KV cache, x split into q, k, v, and each stage's bindings in ExecuTorch's layout.

The layout is the one ExecuTorch's WebGPU host binds (backends/webgpu/runtime/ops/sdpa/Sdpa.cpp,
sdpa_fd_decode/SdpaFdDecode.cpp at cff6f4dd), so q4gsw's reference kernels and ExecuTorch's bind alike:

    q [S, Hq, D], k and v [S, Hkv, D] (fp32), k_cache and v_cache [cache_len, Hkv, D] (fp32, or fp16 when kv_bits
    is 16: 2 bytes an element, which a kernel reads as array<f16> with shader-f16 or as array<u32> of pairs,
    element 2i in the low half, with unpack2x16float), out [S, Hq, D] fp32.

Stages (Op.stages), in the runtime's order:
    update_k, update_v  b0 cache (rw), b1 k or v, b2 {numel, dst_offset, cache_numel, 0}
    attn_weights        b0 attn_weights [Hq, S, context_len] (rw), b1 q, b2 k_cache,
                        b3 {S, Hq, Hkv, D, context_len, input_pos, g, scale: f32}
    softmax             b0 attn_softmax (rw), b1 attn_weights, b2 {Hq * S, context_len, 0, 0}
    compute_out         b0 out, b1 attn_softmax, b2 v_cache, b3 {S, Hq, Hkv, D, context_len, g, 0, 0}
    fd_split            b0 part_o [Hq, 128, D] (rw), b1 part_ml [Hq, 128, 2] (rw), b2 q, b3 k_cache, b4 v_cache,
                        b5 {0, Hkv, D, context_len, g, num_splits, split_len, scale: f32}
    fd_reduce           b0 out, b1 part_o, b2 part_ml, b3 {D, num_splits, 0, 0}
    streaming           b0 out, b1 q, b2 k_cache, b3 v_cache, b4 {S, context_len, input_pos, Hq·D/4, D/4, Hkv·D/4,
                        D/4, Hq·D/4, D/4, 0, 0, 0}
The buffers one stage writes and a later one reads are shared by name (Binding.shared): k_cache, v_cache,
attn_weights, attn_softmax, part_o, part_ml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from q4gsw.ops.base import Binding, Bindings

FD_SPLIT_TILE = 64  # KV positions per FlashDecoding split (SdpaFdDecode.cpp kSdpaFdSplitTile)
FD_MAX_SPLITS = 128  # kSdpaFdMaxSplits: the partials' stride
_STAGES = ("update_k", "update_v", "attn_weights", "softmax", "compute_out", "fd_split", "fd_reduce", "streaming")
# STAGE@f32: the same stage with the caches widened to fp32 (exact: fp16 values are fp32 values). ExecuTorch's
# runtime stores an fp16-KV model's caches in fp32 on a device without shader-f16 (WebGPUGraph.cpp, kv_f16_: the
# opt-in "fail-closed"), and then runs its fp32 kernels on them: its kernel set's *_kv16_fallback variants.
WIDENED = "@f32"
STAGES = _STAGES + tuple(s + WIDENED for s in ("update_k", "update_v", "attn_weights", "compute_out", "fd_split"))


@dataclass(frozen=True)
class KvCache:
    """The caches before the step, [cache_len, Hkv, D] each: float32 (kv_bits 32) or float16 (kv_bits 16), exactly
    the values the kernels' cache buffers start with; and start_pos, the position the step writes its k, v at."""

    k: np.ndarray
    v: np.ndarray
    start_pos: int

    @property
    def kv_bits(self) -> int:
        return 8 * self.k.dtype.itemsize

    @property
    def cache_len(self) -> int:
        return int(self.k.shape[0])


@dataclass(frozen=True)
class Geometry:
    """A step's shape, from x [S, Hq + 2 Hkv, D] and the cache; start_pos = the cache position before the step."""

    seq: int
    heads: int
    kv_heads: int
    head_dim: int
    start_pos: int
    cache_len: int

    @property
    def context_len(self) -> int:
        return self.start_pos + self.seq

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads

    @property
    def scale(self) -> float:
        """1/sqrt(D) in fp32, as the host computes it (1.0f / std::sqrt((float)D)): the kernels receive this."""
        return float(np.float32(1.0) / np.sqrt(np.float32(self.head_dim)))

    @property
    def num_splits(self) -> int:
        return min(math.ceil(self.context_len / FD_SPLIT_TILE), FD_MAX_SPLITS)

    @property
    def split_len(self) -> int:
        return math.ceil(self.context_len / self.num_splits)


def split_x(x: np.ndarray, heads: int, kv_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [S, Hq + 2 Hkv, D] = q ‖ k ‖ v along the heads axis (a fused QKV projection's layout) -> q, k, v, each
    contiguous [S, H, D] float32."""
    if x.ndim != 3 or x.shape[1] != heads + 2 * kv_heads:
        raise ValueError(f"x has shape {x.shape}; sdpa expects [S, {heads} + 2 * {kv_heads}, D]")
    q, k, v = x[:, :heads], x[:, heads:heads + kv_heads], x[:, heads + kv_heads:]
    return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in (q, k, v))  # type: ignore[return-value]


def geometry(x: np.ndarray, cache: KvCache) -> Geometry:
    seq, width, head_dim = x.shape
    kv_heads = int(cache.k.shape[1])
    return Geometry(seq=seq, heads=width - 2 * kv_heads, kv_heads=kv_heads, head_dim=head_dim,
                    start_pos=cache.start_pos,
                    cache_len=cache.cache_len)


def _words(*values: int | float) -> np.ndarray:
    """A uniform Params struct: u32 fields, a float written as its f32 bit pattern, padded to 16 bytes."""
    out = [int(np.float32(v).view(np.uint32)) if isinstance(v, float) else int(v) for v in values]
    out += [0] * (-len(out) % 4)
    return np.array(out, dtype=np.uint32)


def _cache_bytes(cache: np.ndarray) -> np.ndarray:
    """The cache as the buffer's bytes, viewed as u32 words (an fp16 cache: two elements a word, 2i low)."""
    return np.ascontiguousarray(cache).reshape(-1).view(np.uint32)


def stage_bindings(stage: str, x: np.ndarray, cache: KvCache) -> Bindings:
    """The buffers of one stage (module docstring), x split into q, k, v."""
    if stage.endswith(WIDENED):
        stage = stage.removesuffix(WIDENED)
        cache = KvCache(k=cache.k.astype(np.float32), v=cache.v.astype(np.float32), start_pos=cache.start_pos)
    g = geometry(x, cache)
    start_pos = g.start_pos
    q, k, v = split_x(x, g.heads, g.kv_heads)
    ctx, D = g.context_len, g.head_dim
    k_cache, v_cache = _cache_bytes(cache.k), _cache_bytes(cache.v)
    out_shape = (g.seq, g.heads * D)
    aw = np.zeros(g.heads * g.seq * ctx, np.float32)
    part_o, part_ml = np.zeros(g.heads * FD_MAX_SPLITS * D, np.float32), np.zeros(g.heads * FD_MAX_SPLITS * 2,
                                                                                   np.float32)
    kv_numel, cache_numel = g.seq * g.kv_heads * D, cache.k.size
    update = _words(kv_numel, start_pos * g.kv_heads * D, cache_numel)
    by_stage: dict[str, Any] = {
        "update_k": (None, (Binding(0, k_cache, "storage", "k_cache"), Binding(1, k), Binding(2, update, "uniform"))),
        "update_v": (None, (Binding(0, v_cache, "storage", "v_cache"), Binding(1, v), Binding(2, update, "uniform"))),
        "attn_weights": (None, (Binding(0, aw, "storage", "attn_weights"), Binding(1, q),
                                Binding(2, k_cache, shared="k_cache"),
                                Binding(3, _words(g.seq, g.heads, g.kv_heads, D, ctx, start_pos, g.group, g.scale),
                                        "uniform"))),
        "softmax": (None, (Binding(0, aw, "storage", "attn_softmax"), Binding(1, aw, shared="attn_weights"),
                           Binding(2, _words(g.heads * g.seq, ctx), "uniform"))),
        "compute_out": (0, (Binding(1, aw, shared="attn_softmax"), Binding(2, v_cache, shared="v_cache"),
                            Binding(3, _words(g.seq, g.heads, g.kv_heads, D, ctx, g.group), "uniform"))),
        "fd_split": (None, (Binding(0, part_o, "storage", "part_o"), Binding(1, part_ml, "storage", "part_ml"),
                            Binding(2, q), Binding(3, k_cache, shared="k_cache"), Binding(4, v_cache, shared="v_cache"),
                            Binding(5, _words(0, g.kv_heads, D, ctx, g.group, g.num_splits, g.split_len, g.scale),
                                    "uniform"))),
        "fd_reduce": (0, (Binding(1, part_o, shared="part_o"), Binding(2, part_ml, shared="part_ml"),
                          Binding(3, _words(D, g.num_splits), "uniform"))),
        "streaming": (0, (Binding(1, q), Binding(2, k_cache, shared="k_cache"), Binding(3, v_cache, shared="v_cache"),
                          Binding(4, _words(g.seq, ctx, start_pos, g.heads * D // 4, D // 4, g.kv_heads * D // 4,
                                            D // 4, g.heads * D // 4, D // 4), "uniform"))),
    }
    output_index, inputs = by_stage[stage]
    return Bindings(output_index=output_index, output_shape=out_shape if output_index is not None else (),
                    inputs=inputs)
