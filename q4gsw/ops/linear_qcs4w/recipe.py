"""linear_qcs4w's export recipe, as ExecuTorch's own test builds it (needs torch, torchao, executorch).

executorch/backends/webgpu/test/ops/test_linear_qcs4w.py make_qcs4w_linear_module: torch.manual_seed(seed);
nn.Linear(K, N, bias=False); the VulkanQuantizer's weight-only 4-bit config (per-output-channel symmetric,
PerChannelMinMaxObserver, [-8, 7]) through prepare_pt2e / calibration on torch.randn(M, K) / convert_pt2e;
then torch.export and the Vulkan partitioner, whose FuseQuantizedOpsTransform packs the weight and emits
et_vk.linear_qcs4w. With seed = config.weight_seed, a fixture here is that test's fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops.linear_common import mkn
from q4gsw.ops.linear_qcs4w.layout import Qcs4wLinear, pack_qcs4w

DEQUANTIZE_PER_CHANNEL = "dequantize_per_channel"
QUANT_RANGE = (-8, 7)


@dataclass(frozen=True)
class QuantizerTensors:
    """What the quantizer itself decided (the converted module's dequantize_per_channel arguments)."""

    qdata: np.ndarray  # int8 [N, K]
    scales: np.ndarray  # float32 [N]
    zero_points: np.ndarray  # [N]
    axis: int
    quant_range: tuple[int, int]


def converted_module(K: int, N: int, M: int, seed: int) -> Any:
    """The converted (fake-quant) nn.Linear exactly as make_qcs4w_linear_module(K, N, M, bias=False, seed) builds
    it; its eager output is ExecuTorch's golden for the op."""
    import torch
    from executorch.backends.vulkan.quantizer.vulkan_quantizer import (
        VulkanQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    torch.manual_seed(seed)
    linear = torch.nn.Linear(K, N, bias=False).eval()
    example = (torch.randn(M, K),)  # drawn after the weights, as upstream does: the calibration batch
    quantizer = VulkanQuantizer().set_global(get_symmetric_quantization_config(is_dynamic=False, weight_bits=4))
    prepared = prepare_pt2e(torch.export.export(linear, example).module(), quantizer)
    prepared(*example)
    return convert_pt2e(prepared)


def quantizer_tensors(module: Any) -> QuantizerTensors:
    """The int8 weight, scales and zero points the converted module dequantizes (its only dequantize_per_channel)."""
    nodes = [n for n in module.graph.nodes if n.op == "call_function" and DEQUANTIZE_PER_CHANNEL in str(n.target)]
    if len(nodes) != 1:
        raise DelegateLayoutError(f"converted module has {len(nodes)} dequantize_per_channel calls, expected 1")
    weight, scales, zero_points, axis, qmin, qmax = nodes[0].args[:6]

    def attribute(node: Any) -> np.ndarray:
        return getattr(module, node.target).detach().numpy().copy()

    return QuantizerTensors(qdata=attribute(weight), scales=attribute(scales), zero_points=attribute(zero_points),
                            axis=int(axis), quant_range=(int(qmin), int(qmax)))


def export_pte(config: Config) -> tuple[bytes, QuantizerTensors]:
    """Upstream's converted module lowered with the Vulkan partitioner; returns (.pte, the quantizer's tensors)."""
    import torch

    from q4gsw.export.lowering import lower_to_vulkan
    M, K, N, _group_size = mkn(config)
    module = converted_module(K, N, M, config.weight_seed)
    tensors = quantizer_tensors(module)
    pte = lower_to_vulkan(module, (torch.zeros(M, K, dtype=torch.float32),))
    return pte, tensors


def cross_check(constants: Qcs4wLinear, tensors: QuantizerTensors, config: Config) -> None:
    """The .pte's bytes and scales must be exactly the quantizer's int8 weight packed and its fp32 scales."""
    _M, K, N, _group_size = mkn(config)
    if tensors.axis != 0 or tensors.quant_range != QUANT_RANGE:
        raise DelegateLayoutError(f"quantizer used axis {tensors.axis}, range {tensors.quant_range}; qcs4w is "
                                  f"per output channel (axis 0) over {QUANT_RANGE}")
    if np.any(tensors.zero_points != 0):
        raise DelegateLayoutError("quantizer produced a non-zero zero point; qcs4w is symmetric")
    if tensors.qdata.shape != (N, K) or constants.K != K or constants.N != N:
        raise DelegateLayoutError(f"quantizer weight {tensors.qdata.shape} / delegate N={constants.N}, "
                                  f"K={constants.K}; config has N={N}, K={K}")
    if not np.array_equal(pack_qcs4w(tensors.qdata), constants.weight_packed):
        raise DelegateLayoutError("delegate's packed weight differs from the quantizer's int8 weight packed "
                                  "(even k high nibble, value + 8)")
    if tensors.scales.dtype != np.float32 or not np.array_equal(tensors.scales, constants.scales):
        raise DelegateLayoutError("delegate scales differ from the quantizer's per-channel scales")
