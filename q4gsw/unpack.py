"""The one place that knows ExecuTorch's packed-int4 (q4gsw) layout.

Layout, as serialized in the Vulkan delegate of the .pte and consumed unchanged by the WGSL kernels:
- weights: uint8 [N, K/2]; byte j of row n holds element 2j in the low nibble and 2j+1 in the high
  nibble; value = nibble - 8, in [-8, 7] (symmetric, no zero point);
- scales: float32 [K / group_size, padded_N] (transposed relative to the weight);
- y[m, n] = sum_k x[m, k] * q[n, k] * scales[k // group_size, n].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Q4GSW_OPERATOR = "et_vk.linear_q4gsw.default"
NIBBLE_OFFSET = 8


@dataclass(frozen=True)
class PackedLinear:
    """The int4 linear as the GPU kernel sees it."""

    weight_packed: np.ndarray  # uint8 [N, K/2]
    scales: np.ndarray  # float32 [K/group_size, padded_N]
    group_size: int

    @property
    def N(self) -> int:
        return int(self.weight_packed.shape[0])

    @property
    def K(self) -> int:
        return int(self.weight_packed.shape[1]) * 2

    @property
    def padded_N(self) -> int:
        return int(self.scales.shape[1])

    def dequantized_rows(self, n0: int, n1: int) -> np.ndarray:
        """Weights of output rows n0..n1 as the op defines them, in fp64, shape [n1 - n0, K].

        The op dequantizes in fp32: q * scale rounded to fp32, as torchao's dequantize_affine (ExecuTorch's
        reference, custom_ops_lib.linear_q4gsw) and every kernel do. So the golden is the exact fp64 product
        of x with those weights, and equals ExecuTorch's own golden (test_quantized_linear._fp64_golden)."""
        q = unpack_int4(self.weight_packed[n0:n1]).astype(np.float32)
        per_k_scales = np.repeat(self.scales[:, n0:n1].astype(np.float32), self.group_size, axis=0)  # [K, n]
        return (q * per_k_scales.T).astype(np.float64)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """uint8 [N, K/2] -> int8 [N, K] with values in [-8, 7]."""
    packed = np.asarray(packed, dtype=np.uint8)
    out = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int8)
    out[:, 0::2] = (packed & 0x0F).astype(np.int8) - NIBBLE_OFFSET
    out[:, 1::2] = (packed >> 4).astype(np.int8) - NIBBLE_OFFSET
    return out


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int [N, K] in [-8, 7] -> uint8 [N, K/2]; the inverse of unpack_int4."""
    q = np.asarray(q)
    if q.shape[1] % 2:
        raise ValueError(f"K={q.shape[1]} must be even to pack two nibbles per byte")
    if q.min(initial=0) < -NIBBLE_OFFSET or q.max(initial=0) > NIBBLE_OFFSET - 1:
        raise ValueError("int4 values must lie in [-8, 7]")
    nibbles = (q.astype(np.int16) + NIBBLE_OFFSET).astype(np.uint8)
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)


def as_u32_words(weight_packed: np.ndarray) -> np.ndarray:
    """The packed bytes as the little-endian u32 words the kernels bind (zero-padded to a whole word)."""
    flat = np.ascontiguousarray(weight_packed, dtype=np.uint8).reshape(-1)
    pad = (-flat.size) % 4
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, dtype=np.uint8)])
    return flat.view("<u4")


class DelegateLayoutError(RuntimeError):
    """The .pte is not what the q4gsw kernels consume (wrong op, not delegated, unexpected shapes)."""


def read_pte(pte_bytes: bytes) -> PackedLinear:
    """Extract the packed weights and scales from the .pte's Vulkan delegate (needs executorch)."""
    from executorch.backends.vulkan.serialization.vulkan_graph_schema import VkBytes, VkTensor
    from executorch.backends.vulkan.serialization.vulkan_graph_serialize import (
        VulkanDelegateHeader,
        extract_vk_flatbuffer,
        flatbuffer_to_vk_graph,
    )
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(pte_bytes)
    plan = pte.program.execution_plan[0]
    if len(plan.delegates) != 1 or plan.delegates[0].id != "VulkanBackend":
        ids = [d.id for d in plan.delegates]
        raise DelegateLayoutError(f"expected exactly one VulkanBackend delegate, found {ids}")
    instructions = [type(i.instr_args).__name__ for chain in plan.chains for i in chain.instructions]
    if plan.operators or any(kind != "DelegateCall" for kind in instructions):
        names = [op.name for op in plan.operators]
        raise DelegateLayoutError(f"graph is not fully delegated: operators outside the delegate {names}, "
                                  f"instructions {instructions}")
    blob = pte.program.backend_delegate_data[plan.delegates[0].processed.index].data
    header = VulkanDelegateHeader.from_bytes(blob[: VulkanDelegateHeader.EXPECTED_LENGTH])
    graph = flatbuffer_to_vk_graph(extract_vk_flatbuffer(blob))
    calls = list(graph.chain)
    if [c.name for c in calls] != [Q4GSW_OPERATOR]:
        raise DelegateLayoutError(f"delegate runs {[c.name for c in calls]}, expected only {Q4GSW_OPERATOR}")
    args = calls[0].args
    weight_tensor = graph.values[args[1]].value
    scales_tensor = graph.values[args[2]].value
    group_size = int(graph.values[args[3]].value.int_val)
    if not isinstance(weight_tensor, VkTensor) or not isinstance(scales_tensor, VkTensor):
        raise DelegateLayoutError("linear_q4gsw weights/scales are not constant tensors")

    def constant_bytes(tensor: VkTensor) -> bytes:
        constant = graph.constants[tensor.constant_id]
        if isinstance(constant, VkBytes) and constant.named_key:
            buffer_index = _named_buffer_index(pte, constant.named_key)
            return bytes(pte.named_data.buffers[buffer_index])
        offset = header.bytes_offset + constant.offset
        return bytes(blob[offset:offset + constant.length])

    weight_dims = [int(d) for d in weight_tensor.dims]
    scale_dims = [int(d) for d in scales_tensor.dims]
    weight = np.frombuffer(constant_bytes(weight_tensor), dtype=np.uint8)
    scales = np.frombuffer(constant_bytes(scales_tensor), dtype=np.float32)
    if weight.size != weight_dims[0] * weight_dims[1] or scales.size != scale_dims[0] * scale_dims[1]:
        raise DelegateLayoutError(f"constant sizes {weight.size}, {scales.size} do not match dims "
                                  f"{weight_dims}, {scale_dims}")
    return PackedLinear(weight_packed=weight.reshape(weight_dims).copy(),
                        scales=scales.reshape(scale_dims).copy(), group_size=group_size)


def _named_buffer_index(pte: object, key: str) -> int:
    named = pte.named_data  # type: ignore[attr-defined]
    pte_data = named.pte_data
    if isinstance(pte_data, dict):
        return int(pte_data[key].buffer_index)
    for entry in pte_data:
        if getattr(entry, "key", None) == key:
            return int(entry.buffer_index)
    raise DelegateLayoutError(f"named data key {key} not found in the .pte")
