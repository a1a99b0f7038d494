"""Per-row dynamic int8 activation quantization, exactly as torchao 0.18 defines it for the 8da4w path.

Int8DynamicActivationIntxWeightConfig quantizes each activation row with
torchao.quantization.quant_primitives.choose_qparams_affine(x, ASYMMETRIC, block_size=[1, K], int8,
quant_min=-128, quant_max=127, eps=None, zero_point_dtype=int8), in fp32:

    min_neg = min(min(x), 0), max_pos = max(max(x), 0)
    scale   = max((max_pos - min_neg) / 255, eps)          eps = finfo(float32).smallest_normal = 2^-126
    zp      = clamp(-128 - round(min_neg / scale), -128, 127)   (round: half to even)

and quantize_affine as clamp(round(x * (1.0 / scale)) + zp, -128, 127). numpy's fp32 arithmetic is IEEE
round-to-nearest like torch's CPU kernels, so `choose_qparams` is bit-exact: tests/test_op_linear_dq8ca_q4gsw.py
compares its scale and zero point, and `torchao_codes`, with torchao's own choose_qparams_affine and quantize_affine
on rows built so that min / scale and x / scale land exactly on .5 ties (where half away from zero differs) and on
random rows. The op's meaning (golden.py) rounds the exact quotient x / scale instead of torchao's
two-rounding x * fl(1 / scale): `torchao_codes` is torchao's, for the comparison with the wheel helper's golden.

`executorch_qparams` replays ExecuTorch's WebGPU choose_qparams_affine.wgsl in numpy (its algorithm, with
correctly rounded fp32 division), to find the rows on which ExecuTorch's choice diverges from torchao's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANT_MIN, QUANT_MAX = -128, 127
EPS = np.float32(np.finfo(np.float32).tiny)  # torch.finfo(torch.float32).smallest_normal
LEVELS = np.float32(QUANT_MAX - QUANT_MIN)
EXECUTORCH_SMALL_SCALE = np.float32(6.1e-5)  # choose_qparams_affine.wgsl's SMALL_SCALE_THRESHOLD


@dataclass(frozen=True)
class RowQparams:
    """One activation scale and int8 zero point per row of x."""

    scale: np.ndarray  # float32 [M]
    zero_point: np.ndarray  # int8 [M]

    def zero_point_words(self) -> np.ndarray:
        """The int8 zero points as the kernels bind them: 4 per little-endian u32 word, row r in byte r % 4 of
        word r // 4, the last word zero-padded (ExecuTorch's int8 tensor bound as array<u32>)."""
        raw = self.zero_point.astype(np.int8).view(np.uint8)
        padded = np.zeros(-(-raw.size // 4) * 4, dtype=np.uint8)
        padded[:raw.size] = raw
        return padded.view("<u4")


def choose_qparams(x: np.ndarray) -> RowQparams:
    """torchao's per-row asymmetric int8 qparams of x [M, K] (fp32), bit-exact."""
    x = np.asarray(x, dtype=np.float32)
    min_neg = np.minimum(x.min(axis=1), np.float32(0))
    max_pos = np.maximum(x.max(axis=1), np.float32(0))
    scale = np.maximum((max_pos - min_neg) / LEVELS, EPS).astype(np.float32)
    zero_point = np.float32(QUANT_MIN) - np.round(min_neg / scale)
    return RowQparams(scale=scale, zero_point=np.clip(zero_point, QUANT_MIN, QUANT_MAX).astype(np.int8))


def quotients(x: np.ndarray, qparams: RowQparams) -> np.ndarray:
    """x / scale in fp64 (exact quotient of the fp32 operands, rounded once to fp64): what the op rounds."""
    return np.asarray(x, dtype=np.float64) / qparams.scale.astype(np.float64)[:, None]


def centered_codes(t: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """xq - zp with xq = clamp(round(t) + zp, -128, 127): the integers the dot product uses, as fp64 [M, K]."""
    z = zero_point.astype(np.float64)[:, None]
    return np.clip(np.round(t) + z, QUANT_MIN, QUANT_MAX) - z


def op_codes(x: np.ndarray, qparams: RowQparams) -> np.ndarray:
    """The op's xq - zp, rounding the exact x / scale."""
    return centered_codes(quotients(x, qparams), qparams.zero_point)


def torchao_codes(x: np.ndarray, qparams: RowQparams) -> np.ndarray:
    """torchao's quantize_affine: round(x * fl(1 / scale)) in fp32, minus zp (differs from op_codes only where
    x / scale is within ~1.5 fp32 ulp of a .5 tie)."""
    inverse = (np.float32(1.0) / qparams.scale).astype(np.float32)
    t = (np.asarray(x, dtype=np.float32) * inverse[:, None]).astype(np.float32)
    return centered_codes(t.astype(np.float64), qparams.zero_point)


def executorch_qparams(x: np.ndarray) -> RowQparams:
    """What ExecuTorch's choose_qparams_affine.wgsl computes (its algorithm in numpy fp32): scale 0 becomes 0.1,
    scales below SMALL_SCALE_THRESHOLD are raised to it (stretching [min, max]), and the zero point is the
    rounded one of qmin - min/scale and qmax - max/scale with the smaller 'error' (nudged into [qmin, qmax])."""
    x = np.asarray(x, dtype=np.float32)
    qmin, qmax = np.float32(QUANT_MIN), np.float32(QUANT_MAX)
    scales, zero_points = [], []
    for row in x:
        mn, mx = min(np.float32(row.min()), np.float32(0)), max(np.float32(row.max()), np.float32(0))
        scale = np.float32((mx - mn) / (qmax - qmin))
        if scale == 0:
            scale = np.float32(0.1)
        if scale < EXECUTORCH_SMALL_SCALE:
            original, scale = scale, EXECUTORCH_SMALL_SCALE
            if mn == 0:
                mx = np.float32(EXECUTORCH_SMALL_SCALE * (qmax - qmin))
            elif mx == 0:
                mn = np.float32(-EXECUTORCH_SMALL_SCALE * (qmax - qmin))
            else:
                amplifier = np.float32(EXECUTORCH_SMALL_SCALE / original)
                mn, mx = np.float32(mn * amplifier), np.float32(mx * amplifier)
        from_min, from_max = np.float32(qmin - mn / scale), np.float32(qmax - mx / scale)
        min_error = np.float32(abs(qmin) - abs(np.float32(mn / scale)))
        max_error = np.float32(abs(qmax) - abs(np.float32(mx / scale)))
        initial = from_min if min_error < max_error else from_max
        zero_point = QUANT_MIN if initial < qmin else QUANT_MAX if initial > qmax else int(np.round(initial))
        scales.append(scale)
        zero_points.append(zero_point)
    return RowQparams(scale=np.array(scales, dtype=np.float32), zero_point=np.array(zero_points, dtype=np.int8))
