"""ExecuTorch's TensorMeta uniform (backends/webgpu/runtime/ops/TensorMeta.h), shared by the ops whose kernels take
it: add (binary_add.wgsl) and swiglu's unfused route (binary_op.wgsl's mul)."""

from __future__ import annotations

import math

import numpy as np

MAX_NDIM = 8  # kTensorMetaMaxNdim


def tensor_meta(shape: tuple[int, ...], out_ndim: int) -> np.ndarray:
    """ExecuTorch's broadcast TensorMeta of a tensor of `shape` right-aligned into out_ndim dims: sizes of the
    missing leading dims 1, contiguous strides, the unused slots size 1 stride 0 (fill_tensor_meta_broadcast)."""
    if not len(shape) <= out_ndim <= MAX_NDIM:
        raise ValueError(f"rank {len(shape)} into {out_ndim} dims (at most {MAX_NDIM})")
    sizes = [1] * MAX_NDIM
    strides = [0] * MAX_NDIM
    stride = 1
    for i in range(len(shape) - 1, -1, -1):
        slot = out_ndim - len(shape) + i
        sizes[slot], strides[slot] = shape[i], stride
        stride *= shape[i]
    return np.array([out_ndim, math.prod(shape), 0, 0, *sizes, *strides], dtype=np.uint32)
