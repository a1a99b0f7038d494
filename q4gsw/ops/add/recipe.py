"""add's export recipe, as ExecuTorch's own test builds it (needs torch, executorch).

executorch/backends/webgpu/test/ops/test_add.py: AddModule (forward(a, b) = a + b) exported with torch.export and
lowered by to_edge_transform_and_lower with the VulkanPartitioner (the WebGPU runtime consumes the Vulkan
delegate). The delegate then runs one aten.add.Tensor with args [in1, in2, alpha, out]; add/BinaryOp.cpp reads
alpha from the graph (an Int or a Double) and fixes it as the kernel's `alpha` override. The op has no weights:
what the .pte contributes is that call, its operand shapes (the broadcast the kernel's TensorMeta uniforms
describe) and alpha, which the golden multiplies b by.
"""

from __future__ import annotations

from typing import Any

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops.add.golden import AddGraph

ADD_OPERATOR = "aten.add.Tensor"


def export_pte(config: Config) -> tuple[bytes, Any]:
    """(.pte of test_add.py's AddModule at the config's operand shapes, the alpha the module asks for: 1)."""
    import torch

    from q4gsw.export.lowering import lower_to_vulkan
    from q4gsw.ops.add.golden import operands
    from q4gsw.ops.add.inputs import make_operands

    class AddModule(torch.nn.Module):  # test_add.py's, as it is
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    d = config.dims
    x = make_operands(config.inputs[0], d["rows"], d["width"], config.weight_seed)
    a, b = operands(x, d["b_rows"], d["b_width"])
    return lower_to_vulkan(AddModule().eval(), (torch.from_numpy(a), torch.from_numpy(b))), 1.0


def graph_from_pte(pte: bytes) -> AddGraph:
    """alpha and b's dims of the delegate's one aten.add.Tensor (DelegateLayoutError when it runs anything else,
    or b is not 2-D)."""
    from executorch.backends.vulkan.serialization.vulkan_graph_schema import Double, Int

    from q4gsw.export.pte import read_delegate

    graph = read_delegate(pte)
    alpha = graph.value(graph.args(ADD_OPERATOR)[2])
    if isinstance(alpha, Int):
        value = float(alpha.int_val)
    elif isinstance(alpha, Double):
        value = float(alpha.double_val)
    else:
        raise DelegateLayoutError(f"{ADD_OPERATOR}'s alpha is a {type(alpha).__name__}, not an Int or a Double")
    b_dims = operand_dims(pte)[1]
    if len(b_dims) != 2:
        raise DelegateLayoutError(f"{ADD_OPERATOR}'s second operand has dims {b_dims}; q4gsw's add is 2-D")
    return AddGraph(alpha=value, b_shape=(b_dims[0], b_dims[1]))


def operand_dims(pte: bytes) -> list[list[int]]:
    """[in1, in2, out] dims of the delegate's aten.add.Tensor."""
    from q4gsw.export.pte import read_delegate

    graph = read_delegate(pte)
    args = graph.args(ADD_OPERATOR)
    return [[int(n) for n in graph.value(args[i]).dims] for i in (0, 1, 3)]


def cross_check(pte: bytes, constants: AddGraph, expected_alpha: float, config: Config) -> None:
    """The delegate adds the config's operand shapes, with the module's alpha."""
    d = config.dims
    wanted = [[d["rows"], d["width"]], [d["b_rows"], d["b_width"]], [d["rows"], d["width"]]]
    found = operand_dims(pte)
    if found != wanted:
        raise DelegateLayoutError(f"delegate's {ADD_OPERATOR} has operands {found}, expected {wanted}")
    if constants.alpha != expected_alpha:
        raise DelegateLayoutError(f"delegate's {ADD_OPERATOR} has alpha {constants.alpha}, the module "
                                  f"{expected_alpha}")
