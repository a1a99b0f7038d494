"""rms_norm's export recipe (needs torch, executorch): the module, torch.export, the Vulkan partitioner, whose
rms_norm pattern (backends/vulkan/patterns/rms_norm.py) fuses x * rsqrt(mean(x * x) + eps) * weight into one
et_vk.rms_norm call holding the weight as a constant and eps as a double.

weights = "llama": the Llama example's own norm, executorch.examples.models.llama.norm.RMSNorm(width,
eps=1e-5), weight drawn after torch.manual_seed(weight_seed) from N(1, 0.5) (a trained norm's gains are not
ones). The other weights are ExecuTorch's test_rms_norm.py cases: its RmsNormModule(width, eps=1e-6) with
its _linspace_weight, _weight_zeros_neg or the width_1 case's 1.3. The example input is [1, rows, width]
([batch, seq, dim], as the Llama model calls its norms; the host flattens every leading dim into rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops.rms_norm.inputs import WEIGHT_EPS
from q4gsw.ops.rms_norm.layout import NormWeights

UPSTREAM_TEST = "executorch.backends.webgpu.test.ops.test_rms_norm"


def norm_module(weights: str, width: int, seed: int) -> Any:
    """The seeded module the config's weights name (eval mode, fp32)."""
    import importlib

    import torch

    if weights == "llama":
        from executorch.examples.models.llama.norm import RMSNorm

        torch.manual_seed(seed)
        module = RMSNorm(width, eps=WEIGHT_EPS[weights])
        with torch.no_grad():
            module.weight.normal_(1.0, 0.5)
        return module.eval()
    upstream = importlib.import_module(UPSTREAM_TEST)
    module = upstream.RmsNormModule(width, eps=WEIGHT_EPS[weights])
    weight = {"linspace": upstream._linspace_weight, "zeros_neg": upstream._weight_zeros_neg,
              "upstream_width_1": lambda h: torch.full((h,), 1.3, dtype=torch.float32)}[weights](width)
    with torch.no_grad():
        module.weight.copy_(weight)
    return module.eval()


def export_pte(config: Config) -> tuple[bytes, NormWeights]:
    """The module lowered with the Vulkan partitioner; returns (.pte, the module's own weight and eps)."""
    import torch

    from q4gsw.export.lowering import lower_to_vulkan

    rows, width = config.dims["rows"], config.dims["width"]
    module = norm_module(config.weights, width, config.weight_seed)
    own = NormWeights(weight=module.weight.detach().numpy().astype(np.float32).copy(), eps=float(module.eps))
    return lower_to_vulkan(module, (torch.zeros(1, rows, width, dtype=torch.float32),)), own


def cross_check(constants: NormWeights, own: NormWeights, config: Config) -> None:
    """The delegate's weight must be the module's bit for bit and its eps the module's eps."""
    if constants.width != config.dims["width"]:
        raise DelegateLayoutError(f"delegate weight has {constants.width} elements; config has width "
                                  f"{config.dims['width']}")
    if not np.array_equal(constants.weight, own.weight):
        raise DelegateLayoutError("delegate's rms_norm weight differs from the module's weight")
    if constants.eps != own.eps:
        raise DelegateLayoutError(f"delegate's eps {constants.eps!r} is not the module's {own.eps!r}")
