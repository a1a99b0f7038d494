"""linear_q4gsw's export recipe, as ExecuTorch's own tests build it (needs torch, torchao, executorch).

A seeded nn.Linear(K, N, bias=False) quantized by torchao's IntxWeightOnlyConfig (int4, PerGroup),
exported and lowered through the Vulkan partitioner: the delegate runs et_vk.linear_q4gsw. The
constants read back from the .pte are cross-checked against torchao's quantized tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops import inputs
from q4gsw.ops.linear_common import mkn
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, unpack_int4


def export_pte(config: Config) -> tuple[bytes, Any]:
    """Quantize a seeded Linear with torchao and lower it with the Vulkan partitioner; returns (.pte, qweight)."""
    import torch
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    from q4gsw.export.lowering import lower_to_vulkan
    M, K, N, group_size = mkn(config)
    model = torch.nn.Linear(K, N, bias=False)
    with torch.no_grad():
        weights = inputs.make_weights(config.weights, N, K, group_size, config.weight_seed)
        model.weight.copy_(torch.from_numpy(weights))
        del weights
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size)))
    pte = lower_to_vulkan(model, (torch.zeros(M, K, dtype=torch.float32),))
    return pte, model.weight


def cross_check(packed: PackedLinear, qweight: Any, config: Config) -> None:
    """The .pte's nibbles and scales must equal torchao's quantized tensor exactly."""
    _M, K, N, group_size = mkn(config)
    qdata = qweight.qdata.numpy()
    scale = qweight.scale.numpy().reshape(N, -1)
    zero_point = getattr(qweight, "zero_point", None)
    if zero_point is not None and int(zero_point.abs().max()) != 0:
        raise DelegateLayoutError("torchao produced a non-zero zero point; q4gsw is symmetric")
    if packed.weight_packed.shape != (N, K // 2):
        raise DelegateLayoutError(f"packed weight shape {packed.weight_packed.shape} != {(N, K // 2)}")
    if packed.group_size != group_size:
        raise DelegateLayoutError(f"delegate group_size {packed.group_size} != config group_size {group_size}")
    for n0 in range(0, N, 4096):
        n1 = min(n0 + 4096, N)
        if not np.array_equal(unpack_int4(packed.weight_packed[n0:n1]), qdata[n0:n1]):
            raise DelegateLayoutError(f"unpacked int4 rows {n0}..{n1} differ from torchao's qdata")
    if not np.array_equal(packed.scales[:, : N], scale.T):
        raise DelegateLayoutError("delegate scales differ from torchao's scale (transposed)")
