"""Same-GPU baselines for `bench --backend native`: torch's int4 weight-only path and an fp32 dequant+matmul.

Only used where torch with CUDA is importable; the bench table then gains their times and the ratio
of the WGSL kernel's time to theirs. Both are checked against the fp64 golden before being timed, so
a mis-packed baseline cannot make the WGSL kernel look good.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from q4gsw.ops.linear_q4gsw.layout import PackedLinear, unpack_int4


@dataclass(frozen=True)
class TorchTimes:
    int4_s: float | None  # torch._weight_int4pack_mm (bf16 activations, tinygemm int4)
    int4_max_rel: float | None  # its max |err| / max |golden|: bf16 activations make it approximate
    fp32_s: float  # dequantize the packed bytes to fp32 on the GPU, then x @ W.T
    fp32_max_rel: float
    device: str
    note: str


def _time(fn: Any, repeats: int, warmup_s: float) -> float:
    """Best seconds of `repeats` calls, each alone (synchronized), after `warmup_s` of back-to-back calls."""
    import torch

    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    while time.perf_counter() - started < warmup_s:
        for _ in range(100):
            fn()
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(max(1, repeats)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


def int4_function(x_gpu: Any, nibbles: Any, scales: Any, group: int) -> Any:
    """torch's tinygemm int4 matmul on these weights (nibbles 0..15 as [N, K] uint8, scales [G, N]), as a closure.
    Raises RuntimeError or AttributeError where tinygemm does not support the shape or group size."""
    import torch

    # tinygemm wants the even element in the high nibble and (scale, zero) pairs with
    # w = (nibble - 8) * scale + zero; q4gsw is symmetric, so zero = 0.
    pairs = (nibbles[:, ::2] << 4 | nibbles[:, 1::2]).to(torch.uint8).contiguous()
    weight = torch._convert_weight_to_int4pack(pairs, 8)
    scales_and_zeros = torch.stack([scales, torch.zeros_like(scales)], dim=2).to(torch.bfloat16).contiguous()
    x_bf16 = x_gpu.to(torch.bfloat16)

    def int4() -> Any:
        return torch._weight_int4pack_mm(x_bf16, weight, group, scales_and_zeros)

    return int4


def gpu_operands(x: np.ndarray, packed: PackedLinear) -> tuple[Any, Any, Any]:
    """(x, nibbles 0..15 [N, K] uint8, scales [G, N]) on the CUDA device."""
    import torch

    device = torch.device("cuda")
    nibbles = torch.from_numpy((unpack_int4(packed.weight_packed).astype(np.int16) + 8).astype(np.uint8)).to(device)
    scales = torch.from_numpy(np.ascontiguousarray(packed.scales[:, : packed.N])).to(device)  # [G, N]
    return torch.from_numpy(x).to(device), nibbles, scales


def time_torch(x: np.ndarray, packed: PackedLinear, reference: np.ndarray, repeats: int,
               warmup_s: float = 0.0) -> TorchTimes:
    import torch

    scale_ref = float(np.abs(reference).max()) or 1.0
    x_gpu, nibbles, scales = gpu_operands(x, packed)
    group = packed.group_size

    # fp32 path: what a framework without an int4 kernel does, dequantizing from the packed nibbles each call.
    def fp32() -> torch.Tensor:
        w = (nibbles.to(torch.float32) - 8.0) * scales.repeat_interleave(group, dim=0).T
        return x_gpu @ w.T

    fp32_out = fp32().double().cpu().numpy()
    fp32_rel = float(np.abs(fp32_out - reference).max()) / scale_ref
    fp32_s = _time(fp32, repeats, warmup_s)

    int4_s = int4_rel = None
    note = ""
    try:
        int4 = int4_function(x_gpu, nibbles, scales, group)
        int4_out = int4().double().cpu().numpy()
        int4_rel = float(np.abs(int4_out - reference).max()) / scale_ref
        if int4_rel > 0.05:
            note = f"torch int4 result off by {int4_rel:.2g} of max|y|: packing mismatch, not timed"
        else:
            int4_s = _time(int4, repeats, warmup_s)
    except (RuntimeError, AttributeError) as exc:  # group sizes or shapes tinygemm does not support
        note = f"torch int4 unavailable: {str(exc).splitlines()[0]}"
    return TorchTimes(int4_s=int4_s, int4_max_rel=int4_rel, fp32_s=fp32_s, fp32_max_rel=fp32_rel,
                      device=torch.cuda.get_device_name(0), note=note)
