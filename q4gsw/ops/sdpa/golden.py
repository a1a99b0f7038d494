"""sdpa's fp64 golden and its error model (docs/ops.md, sdpa; docs/error-model.md).

Golden: write k and v into the caches at start_pos (each value rounded to fp16, round to nearest even, for an fp16
cache: what the cache then holds), then for each query s and head h causal attention over the positions
c <= start_pos + s with kv head h // (Hq / Hkv) and the scale the host passes (fp32 1/sqrt(D)), all in fp64.

Error model (per output out[s, h, d] = sum_c p_c v[c, d], p = softmax(l), l_c = scale * q . k_c), u = 2^-24:
  logits   |dl_c| <= gamma_{D+1} A_c, A_c = scale * sum_d |q_d k_cd| (the dot over D and the scale);
           with an fp16 cache the new rows' k may be either fp16 neighbour (WGSL leaves the f32->f16 rounding to
           the implementation): + 2^-10 A_c for c >= start_pos (the golden rounds to nearest);
  softmax  each weight's relative error e_c = dl_c + (3 + 2|x_c|) 2u (WGSL's stated exp accuracy, x_c = l_c - max l)
           moves out_d by sum_c p_c e_c (v_cd - out_d) to first order; the normalization scales every weight alike:
           |out_d| (gamma_n + 5u) for the sum of the n attended terms and the division (2.5 ulp);
  output   gamma_n sum_c p_c |v_cd| for the weighted V sum over the n attended positions, plus (fp16 cache)
           2^-10 sum_c p_c |v_cd| over the new values v that may round to either neighbour.
worst is their sum (a near one-hot row is insensitive to its logits: the weights |v_cd - out_d| say so). The fp16
terms count only the new values no fp16 number equals (an exact one converts exactly).
est, what a kernel of sequential sums is expected to err by at most over the config's N outputs:
sqrt(2 ln N) u/sqrt(3) [sqrt(n) (S + |out|) + sum_c p_c sqrt(sum_j P_cj^2) |v_cd - out_d|] (the output sum's and
the dot's random roundings, P_cj the dot's running partial sums) + u sum_c p_c (|l_c| + |x_c| + 1) |v_cd - out_d|
(the logit, the shifted argument and exp each rounded once at their size) + the whole fp16 term (a kernel that
always rounds to the other neighbour errs by it everywhere); S = sum_c p_c |v_cd|. step is what an off-by-one
causal bound changes: the output with its last attended position dropped, |p_L (v_L - out) / (1 - p_L)|.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from q4gsw.ops.error_model import CHUNK_ELEMENTS, ErrorModel, U, gamma
from q4gsw.ops.sdpa.layout import KvCache, geometry, split_x

F16_NEIGHBOUR = 2.0**-10  # the other fp16 neighbour of a value is at most one fp16 ulp away: 2^-10 relative


def written_cache(x: np.ndarray, cache: KvCache) -> tuple[np.ndarray, np.ndarray]:
    """The caches after the step's write, in fp64: k and v of x at rows start_pos .. start_pos + S - 1, rounded
    to the cache's dtype (fp16: round to nearest even) first."""
    g = geometry(x, cache)
    _, k, v = split_x(x, g.heads, g.kv_heads)
    k_cache, v_cache = cache.k.astype(np.float64), cache.v.astype(np.float64)
    rows = slice(g.start_pos, g.start_pos + g.seq)
    k_cache[rows] = k.astype(cache.k.dtype).astype(np.float64)
    v_cache[rows] = v.astype(cache.v.dtype).astype(np.float64)
    return k_cache, v_cache


@dataclass(frozen=True)
class Attention:
    """The fp64 attention of one step, with what the error model reads: p [Hq, S, ctx], the logits' |q||k| sums
    A [Hq, S, ctx], the attended caches [ctx, Hkv, D] and the output [S, Hq, D]."""

    p: np.ndarray
    A: np.ndarray
    q: np.ndarray  # [S, Hq, D]
    k: np.ndarray  # [ctx, Hq, D]: kv head h // group for query head h
    scale: float
    logits: np.ndarray
    v: np.ndarray
    out: np.ndarray
    group: int


def attention(x: np.ndarray, cache: KvCache) -> Attention:
    g = geometry(x, cache)
    start_pos = g.start_pos
    q = split_x(x, g.heads, g.kv_heads)[0].astype(np.float64)
    k_cache, v_cache = written_cache(x, cache)
    ctx = g.context_len
    k = np.repeat(k_cache[:ctx], g.group, axis=1)  # [ctx, Hq, D]: query head h reads kv head h // group
    v = np.repeat(v_cache[:ctx], g.group, axis=1)
    logits = g.scale * np.einsum("shd,chd->hsc", q, k)
    A = g.scale * np.einsum("shd,chd->hsc", np.abs(q), np.abs(k))
    masked = np.arange(ctx)[None, None, :] > (start_pos + np.arange(g.seq))[None, :, None]
    logits = np.where(masked, -np.inf, logits)
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    p = e / e.sum(axis=2, keepdims=True)
    out = np.einsum("hsc,chd->shd", p, v)
    return Attention(p=p, A=np.where(masked, 0.0, A), q=q, k=k, scale=g.scale, logits=logits, v=v, out=out,
                     group=g.group)


def golden(x: np.ndarray, cache: KvCache, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    a = attention(x, cache)
    return a.out.reshape(a.out.shape[0], -1)


@dataclass
class AttentionErrorModel(ErrorModel):
    """ErrorModel's interface (S, sigma, step, K: what audit reads) with this op's own bound and estimate."""

    bound: np.ndarray = None  # type: ignore[assignment]
    estimate: np.ndarray = None  # type: ignore[assignment]

    @property
    def worst(self) -> np.ndarray:
        return self.bound

    @property
    def hm_bound(self) -> np.ndarray:
        return self.bound

    @property
    def est(self) -> np.ndarray:
        return self.estimate


def _inexact_new_rows(x: np.ndarray, cache: KvCache, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the step writes a k or v value that no fp16 number equals ([ctx, Hq, D], query heads' view): only there
    can a conversion pick another fp16 neighbour than the golden's nearest one (all zero for an fp32 cache)."""
    g = geometry(x, cache)
    _, k, v = split_x(x, g.heads, g.kv_heads)
    masks = []
    for new in (k, v):
        full = np.zeros((g.context_len, g.kv_heads, g.head_dim), dtype=bool)
        if cache.kv_bits == 16:
            full[g.start_pos:] = new.astype(np.float16).astype(np.float32) != new
        masks.append(np.repeat(full, group, axis=1))
    return masks[0], masks[1]


def error_model(x: np.ndarray, cache: KvCache) -> AttentionErrorModel:
    """The module docstring's model, per output [S, Hq * D]."""
    a = attention(x, cache)
    start_pos = cache.start_pos
    seq, heads, D = a.out.shape
    n = start_pos + 1 + np.arange(seq)  # positions query s attends
    gamma_n = np.array([gamma(int(c)) for c in n])[:, None, None]  # [S, 1, 1]
    f16 = cache.kv_bits == 16
    k_inexact, v_inexact = _inexact_new_rows(x, cache, a.group)  # [ctx, Hq, D]: new values no fp16 number equals
    A_inexact = a.scale * np.einsum("shd,chd->hsc", np.abs(a.q), np.abs(a.k) * k_inexact)
    dl = gamma(D + 1) * a.A + (F16_NEIGHBOUR * A_inexact if f16 else 0.0)  # [Hq, S, ctx]
    shifted = np.nan_to_num(a.logits - a.logits.max(axis=2, keepdims=True), neginf=0.0)
    exp_err = (3 + 2 * np.abs(shifted)) * 2 * U
    # A relative change e_c of each weight moves out_d by sum_c p_c e_c (v_cd - out_d) to first order: per head, to
    # hold [S, ctx, D] at a time. moved: the deterministic one (e = logit and exp errors), spread: the random one.
    moved, logit_spread, logit_last = (np.empty_like(a.out) for _ in range(3))
    block = max(1, CHUNK_ELEMENTS // (a.p.shape[2] * D))  # queries at a time: [block, ctx, D] fp64 arrays
    for h in range(heads):
        for s0 in range(0, seq, block):
            r = slice(s0, s0 + block)
            dev = np.abs(a.v[None, :, h, :] - a.out[r, h, None, :])  # [block, ctx, D]
            moved[r, h] = np.einsum("sc,scd->sd", a.p[h, r] * (dl[h, r] + exp_err[h, r]), dev)
            # the dot's running partial sums P_j: a sequential sum's rounding errors are u/sqrt(3)-sized parts of them
            partial = np.cumsum(a.scale * a.q[r, None, h, :] * a.k[None, :, h, :], axis=2)  # [block, ctx, D]
            logit_spread[r, h] = np.einsum("sc,scd->sd", a.p[h, r] * np.sqrt((partial * partial).sum(axis=2)), dev)
            # rounded once each, at their size: the logit, the max-shifted argument x and exp (an ulp in practice)
            typical = np.abs(partial[:, :, -1]) + np.abs(shifted[h, r]) + 1
            logit_last[r, h] = np.einsum("sc,scd->sd", a.p[h, r] * typical, dev)
    pv = np.einsum("hsc,chd->shd", a.p, np.abs(a.v))  # sum_c p_c |v_cd|
    f16_out = np.einsum("hsc,chd->shd", a.p, np.abs(a.v) * v_inexact) * F16_NEIGHBOUR if f16 else 0.0
    bound = gamma_n * pv + moved + (gamma_n + 5 * U) * np.abs(a.out) + f16_out
    outputs = a.out.size
    spread = math.sqrt(2 * math.log(max(outputs, 2))) * U / math.sqrt(3)
    estimate = spread * (np.sqrt(n)[:, None, None] * (pv + np.abs(a.out)) + logit_spread) + U * logit_last + f16_out
    last = start_pos + np.arange(seq)  # the last position query s attends
    p_last = a.p[:, np.arange(seq), last].T[:, :, None]  # [S, Hq, 1]
    v_last = a.v[last]  # [S, Hq, D]
    step = np.abs(p_last * (v_last - a.out) / np.maximum(1 - p_last, 1e-300))
    flat = (seq, heads * D)
    return AttentionErrorModel(S=pv.reshape(flat), sigma=np.zeros(flat), step=step.reshape(flat), K=int(n.max()),
                               bound=bound.reshape(flat), estimate=estimate.reshape(flat))
