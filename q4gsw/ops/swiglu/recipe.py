"""swiglu's export recipe: the q4 gate/up MLP of ExecuTorch's own SwiGLU test (needs torch, torchao, executorch).

executorch/backends/webgpu/test/ops/dynamic_shape/test_dynamic_shape_export.py SwiGluModule: gate_proj and up_proj
are nn.Linear(64, width, bias=False) after torch.manual_seed(0) and (1), quantized by torchao's IntxWeightOnlyConfig
(int4, PerGroup(32)); forward(x) = gate * sigmoid(gate) * up (test_mul.py's configs call this the same-shape SwiGLU
mul). Exported here with a static [rows, 64] input and lowered by the Vulkan partitioner, the delegate holds
et_vk.linear_q4gsw x2, aten.sigmoid.default and aten.mul.Tensor x2, which runtime/passes/SwiGLU.cpp fuses into one
mul/silu_mul_fused.wgsl dispatch (fusion.py says when). The op checks that dispatch: its inputs are the linears'
outputs, so the config's gate and up stand in for them (the linears are q4gsw's linear_q4gsw op). What the .pte
contributes is the chain the pass fuses, recorded as the fixture's delegate_calls.npy; the kernel reads no constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops.swiglu.fusion import LINEAR, MUL, SIGMOID, find_fusions

INPUT_WIDTH = 64  # SWIGLU_K of upstream's test: the linears' in-features
GROUP_SIZE = 32
EXPECTED_CALLS = (LINEAR, LINEAR, SIGMOID, MUL, MUL)


def export_pte(config: Config) -> tuple[bytes, Any]:
    import torch
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import IntxWeightOnlyConfig, quantize_

    from q4gsw.export.lowering import lower_to_vulkan

    width = config.dims["width"]

    def make_q4(seed: int) -> Any:
        torch.manual_seed(seed)
        linear = torch.nn.Linear(INPUT_WIDTH, width, bias=False).eval()
        quantize_(linear, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(GROUP_SIZE)))
        return linear

    class SwiGluModule(torch.nn.Module):  # upstream's, default orientation
        def __init__(self) -> None:
            super().__init__()
            self.gate_proj, self.up_proj = make_q4(0), make_q4(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gate = self.gate_proj(x)
            up = self.up_proj(x)
            return gate * torch.sigmoid(gate) * up

    x = torch.from_numpy(np.random.default_rng(config.weight_seed).standard_normal(
        (config.dims["rows"], INPUT_WIDTH)).astype(np.float32))
    return lower_to_vulkan(SwiGluModule().eval(), (x,)), EXPECTED_CALLS


def delegate_chain(pte: bytes) -> tuple[list[tuple[str, list[int]]], list[int], dict[int, list[int]]]:
    """(the delegate's calls as (operator, args), its output ids, the dims of every tensor value)."""
    from executorch.backends.vulkan.serialization.vulkan_graph_schema import VkTensor

    from q4gsw.export.pte import read_delegate

    graph = read_delegate(pte).graph
    calls = [(c.name, [int(a) for a in c.args]) for c in graph.chain]
    dims = {i: [int(n) for n in v.value.dims] for i, v in enumerate(graph.values) if isinstance(v.value, VkTensor)}
    return calls, [int(i) for i in graph.output_ids], dims


def calls_from_pte(pte: bytes) -> tuple[str, ...]:
    return tuple(name for name, _ in delegate_chain(pte)[0])


def cross_check(pte: bytes, calls: tuple[str, ...], expected: tuple[str, ...], config: Config) -> None:
    """The delegate is the module's five calls, the runtime pass fuses them into one SwiGLU, and the tensors the
    fused kernel binds (gate, up, out) are [rows, width]."""
    if calls != expected:
        raise DelegateLayoutError(f"delegate runs {list(calls)}, expected {list(expected)}")
    chain, outputs, dims = delegate_chain(pte)
    fusions = find_fusions(chain, outputs)
    if len(fusions) != 1:
        raise DelegateLayoutError(f"ExecuTorch's SwiGLU pass would fuse {len(fusions)} patterns in {chain}, "
                                  "expected 1: the runtime would not dispatch silu_mul_fused.wgsl")
    want = [config.dims["rows"], config.dims["width"]]
    fusion = fusions[0]
    found = [dims.get(i) for i in (fusion.gate, fusion.up, fusion.out)]
    if found != [want] * 3:
        raise DelegateLayoutError(f"the fused kernel's gate, up, out are {found}, expected {want} each")
