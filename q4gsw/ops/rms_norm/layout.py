"""What an et_vk.rms_norm delegate holds: the norm weight (fp32 [width]) and eps (a double), read from the .pte.

et_vk.rms_norm.default's arguments are [input, weight, eps, output] (ExecuTorch's RmsNorm.cpp; the Vulkan
partitioner's rms_norm pattern, backends/vulkan/patterns/rms_norm.py, emits it with eps read off the graph)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RMS_NORM_OPERATOR = "et_vk.rms_norm.default"


@dataclass(frozen=True)
class NormWeights:
    weight: np.ndarray  # float32 [width]
    eps: float  # as the .pte holds it (a double); the kernel receives float32(eps)

    @property
    def width(self) -> int:
        return int(self.weight.shape[0])


def constants_from_delegate(pte_bytes: bytes) -> NormWeights:
    """The weight and eps of the delegate's one et_vk.rms_norm call; DelegateLayoutError for anything else."""
    from q4gsw.export.pte import DelegateLayoutError, read_delegate

    delegate = read_delegate(pte_bytes)
    args = delegate.args(RMS_NORM_OPERATOR)
    if len(args) != 4:
        raise DelegateLayoutError(f"{RMS_NORM_OPERATOR} has {len(args)} arguments, expected [input, weight, eps, "
                                  "output]")
    weight = delegate.constant(args[1], "<f4")
    eps = delegate.value(args[2])
    if type(eps).__name__ != "Double" or weight.ndim != 1:
        raise DelegateLayoutError(f"{RMS_NORM_OPERATOR}: weight dims {list(weight.shape)}, eps a "
                                  f"{type(eps).__name__}; expected a 1-D weight and a Double eps")
    return NormWeights(weight=weight.astype(np.float32), eps=float(eps.double_val))
