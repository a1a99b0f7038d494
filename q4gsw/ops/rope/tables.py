"""The rope op's constants: the cos/sin rows the kernel receives, and where they come from.

ExecuTorch's Llama model (examples/models/llama/rope.py) precomputes freqs_cos/freqs_sin [max_context_len,
head_dim/2] once (Rope.precompute_freqs_cis, fp32) and slices rows [start_pos, start_pos + S) per step
(Rope.get_freqs with the KV cache and dynamic shapes: `narrow(0, input_pos[-1].item(), S)`). Lowered with the
Vulkan partitioner, the delegate holds both tables as constants and runs prepack, select_as_symint, add,
slice_copy twice, then et_vk.apply_rotary_emb on the [S, head_dim/2] slices: what the WebGPU kernel binds is
`rows_from_delegate`'s RopeTables. `llama3_tables` builds the same rows in fp64 from theta and the Llama-3
frequency scaling (for bench and the offline tests; the model itself rounds in fp32, see the op's docs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROPE_OPERATOR = "et_vk.apply_rotary_emb.default"
# The delegate of the Llama Rope's step (recipe.py), in order.
DELEGATE_CALLS = ("et_vk.prepack.default", "et_vk.prepack.default", "et_vk.select_as_symint.default", "add",
                  "aten.slice_copy.Tensor", "aten.slice_copy.Tensor", ROPE_OPERATOR)

# Llama-3.2-1B (params.json; ExecuTorch's llama model.py sets rope_scale_factor = 32 for llama3_2).
THETA = 500000.0
SCALE_FACTOR = 32
LOW_FREQ_FACTOR = 1
HIGH_FREQ_FACTOR = 4
OLD_CONTEXT_LEN = 8192


@dataclass(frozen=True)
class RopeTables:
    """cos and sin fp32 [S, head_dim/2]: row s is position start_pos + s (the rows the kernel binds)."""

    cos: np.ndarray
    sin: np.ndarray
    start_pos: int

    def __post_init__(self) -> None:
        if self.cos.shape != self.sin.shape or self.cos.ndim != 2:
            raise ValueError(f"cos {self.cos.shape} and sin {self.sin.shape} must be one [S, head_dim/2] shape")

    @property
    def seq(self) -> int:
        return int(self.cos.shape[0])

    @property
    def half_dim(self) -> int:
        return int(self.cos.shape[1])


def llama3_frequencies(head_dim: int) -> np.ndarray:
    """fp64 inverse frequencies theta^(-2i/d), i < d/2, with Llama-3's scaling (rope.py apply_scaling): wavelengths
    above 8192 divided by 32, below 8192/4 kept, in between a smooth blend."""
    freqs = 1.0 / THETA ** (np.arange(0, head_dim, 2, dtype=np.float64)[: head_dim // 2] / head_dim)
    low_wavelen = OLD_CONTEXT_LEN / LOW_FREQ_FACTOR
    high_wavelen = OLD_CONTEXT_LEN / HIGH_FREQ_FACTOR
    out = np.empty_like(freqs)
    for i, freq in enumerate(freqs):
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out[i] = freq
        elif wavelen > low_wavelen:
            out[i] = freq / SCALE_FACTOR
        else:
            smooth = (OLD_CONTEXT_LEN / wavelen - LOW_FREQ_FACTOR) / (HIGH_FREQ_FACTOR - LOW_FREQ_FACTOR)
            out[i] = (1 - smooth) * freq / SCALE_FACTOR + smooth * freq
    return out


def llama3_tables(seq: int, head_dim: int, start_pos: int) -> RopeTables:
    """Rows [start_pos, start_pos + seq) of cos/sin(position * frequency), computed in fp64 and rounded to fp32
    once (the model computes them in fp32 throughout; these are the correctly rounded values)."""
    angles = np.arange(start_pos, start_pos + seq, dtype=np.float64)[:, None] * llama3_frequencies(head_dim)[None]
    return RopeTables(cos=np.cos(angles).astype(np.float32), sin=np.sin(angles).astype(np.float32),
                      start_pos=start_pos)


def ramp(numel: int, mod: int, off: int) -> np.ndarray:
    """ExecuTorch's test_rope.py `_ramp`: ((i % mod) - off) / 16, exact in fp32."""
    i = np.arange(numel, dtype=np.int64)
    return (((i % mod) - off) / 16.0).astype(np.float32)


def upstream_tables(seq: int, head_dim: int) -> RopeTables:
    """test_rope.py's freqs, forward inputs there: cos = ramp(11, 5), sin = ramp(7, 3), [S, head_dim/2]. Not a
    rotation (cos^2 + sin^2 != 1): a kernel check only."""
    half = head_dim // 2
    return RopeTables(cos=ramp(seq * half, 11, 5).reshape(seq, half), sin=ramp(seq * half, 7, 3).reshape(seq, half),
                      start_pos=0)
