"""linear_dq8ca_q4gsw's export recipe, as the wheel's helper builds it (needs torch, torchao, executorch).

executorch/backends/webgpu/test/ops/test_linear_dq8ca_q4gsw.py: torch.manual_seed(seed); nn.Linear(K, N,
bias=False).eval(); quantize_ with Int8DynamicActivationIntxWeightConfig(weight_dtype=int4,
weight_granularity=PerGroup(group_size)); exported and lowered through the Vulkan partitioner, the delegate runs
torchao.choose_qparams_affine (per-row activation scale and zero point) then et_vk.linear_dq8ca_q4gsw. The
`torch_linear` weights are that construction (q4gsw.ops.inputs.torch_linear); other weight patterns are copied in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops import inputs
from q4gsw.ops.linear_common import mkn
from q4gsw.ops.linear_q4gsw.layout import DelegateCall, PackedLinear, unpack_int4

QPARAMS_OPERATOR = "torchao.choose_qparams_affine.default"
DQ8CA_OPERATOR = "et_vk.linear_dq8ca_q4gsw.default"
# et_vk.linear_dq8ca_q4gsw args: input, input_scale, input_zp, weight, weight_sums, weight_scales, group_size,
# bias, out (LinearDq8caQ4gsw.cpp); weight_sums is unused by the WebGPU kernel.
DQ8CA_CALL = DelegateCall(operator=DQ8CA_OPERATOR, calls=(QPARAMS_OPERATOR, DQ8CA_OPERATOR), weight_arg=3,
                          scales_arg=5, group_size_arg=6)
# torchao.choose_qparams_affine args: input, mapping_type, block_size, target_dtype, quant_min, quant_max, eps,
# scale_dtype, zero_point_dtype, keepdim, out (scale, zero_point).
EXPECTED_QPARAMS_CALL = {1: "ASYMMETRIC", 4: -128, 5: 127, 6: None}


def export_pte(config: Config) -> tuple[bytes, Any]:
    """The wheel helper's module for the config, lowered; returns (.pte, the quantized weight tensor)."""
    import torch
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig, quantize_

    from q4gsw.export.lowering import lower_to_vulkan
    M, K, N, group_size = mkn(config)
    model = torch.nn.Linear(K, N, bias=False).eval()
    with torch.no_grad():
        weights = inputs.make_weights(config.weights, N, K, group_size, config.weight_seed)
        model.weight.copy_(torch.from_numpy(weights))
        del weights
    quantize_(model, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                            weight_granularity=PerGroup(group_size)))
    pte = lower_to_vulkan(model, (torch.zeros(M, K, dtype=torch.float32),))
    return pte, model.weight


def check_qparams_call(pte: bytes, config: Config) -> None:
    """The delegate's choose_qparams_affine is the per-row asymmetric int8 one qparams.choose_qparams replays."""
    from q4gsw.export.pte import read_delegate
    _M, K, _N, _group_size = mkn(config)
    delegate = read_delegate(pte)
    args = delegate.args(QPARAMS_OPERATOR, DQ8CA_CALL.calls)
    found = {1: getattr(delegate.value(args[1]), "string_val", None),
             4: getattr(delegate.value(args[4]), "int_val", None), 5: getattr(delegate.value(args[5]), "int_val", None),
             6: None if type(delegate.value(args[6])).__name__ == "Null" else delegate.value(args[6])}
    block = list(getattr(delegate.value(args[2]), "items", []))
    if found != EXPECTED_QPARAMS_CALL or block != [1, K]:
        raise DelegateLayoutError(f"choose_qparams_affine called with {found}, block_size {block}; q4gsw replays "
                                  f"{EXPECTED_QPARAMS_CALL} with block_size [1, {K}] (per-row, default eps)")


def cross_check(packed: PackedLinear, qweight: Any, config: Config) -> None:
    """The .pte's nibbles and scales equal torchao's quantized tensor; the activations are quantized per token."""
    _M, K, N, group_size = mkn(config)
    if "int8_asym_per_token" not in str(getattr(qweight, "activation_quantization", "")):
        raise DelegateLayoutError(f"torchao's weight quantizes activations as {qweight.activation_quantization!r}, "
                                  "not int8_asym_per_token")
    zero_point = getattr(qweight, "zero_point", None)
    if zero_point is not None and int(zero_point.abs().max()) != 0:
        raise DelegateLayoutError("torchao produced a non-zero weight zero point; q4gsw weights are symmetric")
    if packed.weight_packed.shape != (N, K // 2) or packed.group_size != group_size:
        raise DelegateLayoutError(f"delegate holds weights {packed.weight_packed.shape}, group_size "
                                  f"{packed.group_size}; config needs {(N, K // 2)}, {group_size}")
    qdata = qweight.qdata.numpy()
    for n0 in range(0, N, 4096):
        n1 = min(n0 + 4096, N)
        if not np.array_equal(unpack_int4(packed.weight_packed[n0:n1]), qdata[n0:n1]):
            raise DelegateLayoutError(f"unpacked int4 rows {n0}..{n1} differ from torchao's qdata")
    if not np.array_equal(packed.scales[:, :N], qweight.scale.numpy().reshape(N, -1).T):
        raise DelegateLayoutError("delegate scales differ from torchao's scale (transposed)")
