"""A .pte's Vulkan delegate as a graph of operator calls and constants (needs executorch).

Generic over ops: an op asks for its calls and reads its constants' bytes from here
(q4gsw/ops/<op>/ knows which arguments are which and how they are packed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class DelegateLayoutError(RuntimeError):
    """The .pte is not what the op's kernels consume (wrong op, not delegated, unexpected shapes)."""


PTE_NEEDS = "reading an ExecuTorch .pte needs the executorch package: pip install -e '.[export]'"


class UnreadablePte(RuntimeError):
    """A .pte from outside q4gsw that cannot be read: empty, random bytes, another program, or no executorch."""


def constants_from_foreign_pte(path: Path, read: Callable[[bytes], Any]) -> Any:
    """read(the file's bytes) (an op's constants_from_pte), with anything wrong with the file, including a missing
    executorch package, as one UnreadablePte line naming the file instead of a traceback from the deserializer."""
    try:
        data = path.read_bytes()
    except OSError as exc:  # a folder, no permission, an I/O error: the file's problem, not a traceback
        raise UnreadablePte(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}): give the path of a "
                            "readable .pte file") from exc
    if not data:
        raise UnreadablePte(f"{path}: empty file, not a .pte")
    try:
        return read(data)
    except ImportError as exc:
        raise UnreadablePte(f"{path}: {PTE_NEEDS} ({exc})") from exc
    except DelegateLayoutError as exc:
        raise UnreadablePte(f"{path}: {exc}") from exc
    except Exception as exc:  # executorch's deserializer on foreign bytes: any error means "not a .pte it reads"
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise UnreadablePte(f"{path}: not a .pte ExecuTorch can read ({type(exc).__name__}"
                            f"{': ' + ' | '.join(lines[-2:]) if lines else ''})") from exc


@dataclass(frozen=True)
class CallArg:
    """One argument of a delegate call: a tensor (its dims, whether it is a constant) or another value's kind."""

    value_id: int
    kind: str  # VkTensor, Int, Double, Bool, IntList, ValueList, SymInt, String, Null ...
    dims: tuple[int, ...] = ()
    constant: bool = False

    def text(self) -> str:
        if self.kind != "VkTensor":
            return self.kind
        return "[" + ",".join(map(str, self.dims)) + "]" + (" const" if self.constant else "")


@dataclass(frozen=True)
class Call:
    """One operator call of the delegate's chain, in the order the runtime runs them."""

    operator: str
    args: tuple[CallArg, ...]


@dataclass(frozen=True)
class DelegateGraph:
    """The fully delegated Vulkan graph of a .pte: its operator calls and constant data."""

    pte: Any  # executorch's PTEFile
    graph: Any  # the VkGraph
    blob: bytes
    bytes_offset: int

    @property
    def call_names(self) -> list[str]:
        return [c.name for c in self.graph.chain]

    def calls(self) -> tuple[Call, ...]:
        """Every call of the chain with its arguments described (what a composed run must execute, in order)."""
        found = []
        for call in self.graph.chain:
            described = []
            for arg in call.args:
                value = self.graph.values[arg].value
                kind = type(value).__name__
                if kind == "VkTensor":
                    described.append(CallArg(int(arg), kind, tuple(int(d) for d in value.dims),
                                             int(value.constant_id) >= 0))
                else:
                    described.append(CallArg(int(arg), kind.removeprefix("Vk") if kind != "NoneType" else "Null"))
            found.append(Call(str(call.name), tuple(described)))
        return tuple(found)

    def args(self, operator: str, calls: tuple[str, ...] = ()) -> list[int]:
        """The value ids of the call of `operator` in a delegate whose calls are exactly `calls` (default: that one
        call alone, e.g. a dynamic-quant op's chain is its qparams call then the op); DelegateLayoutError when the
        delegate runs anything else."""
        expected = list(calls or (operator,))
        if self.call_names != expected or expected.count(operator) != 1:
            raise DelegateLayoutError(f"delegate runs {self.call_names}, expected {expected}")
        return list(self.graph.chain[expected.index(operator)].args)

    def value(self, arg: int) -> Any:
        return self.graph.values[arg].value

    def constant(self, arg: int, dtype: str) -> np.ndarray:
        """A constant tensor argument as an array of its declared dims."""
        from executorch.backends.vulkan.serialization.vulkan_graph_schema import VkBytes, VkTensor

        tensor = self.value(arg)
        if not isinstance(tensor, VkTensor):
            raise DelegateLayoutError(f"argument {arg} is a {type(tensor).__name__}, not a constant tensor")
        constant = self.graph.constants[tensor.constant_id]
        if isinstance(constant, VkBytes) and constant.named_key:
            raw = bytes(self.pte.named_data.buffers[_named_buffer_index(self.pte, constant.named_key)])
        else:
            offset = self.bytes_offset + constant.offset
            raw = bytes(self.blob[offset:offset + constant.length])
        dims = [int(d) for d in tensor.dims]
        array = np.frombuffer(raw, dtype=dtype)
        if array.size != int(np.prod(dims)):
            raise DelegateLayoutError(f"constant of {array.size} {dtype} does not match its dims {dims}")
        return array.reshape(dims).copy()


def read_delegate(pte_bytes: bytes) -> DelegateGraph:
    """The .pte's one Vulkan delegate; DelegateLayoutError unless the graph is fully delegated to it."""
    from executorch.backends.vulkan.serialization.vulkan_graph_serialize import (
        VulkanDelegateHeader,
        extract_vk_flatbuffer,
        flatbuffer_to_vk_graph,
    )
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(pte_bytes)
    plan = pte.program.execution_plan[0]
    if len(plan.delegates) != 1 or plan.delegates[0].id != "VulkanBackend":
        found = [d.id for d in plan.delegates]
        raise DelegateLayoutError(f"expected exactly one VulkanBackend delegate, found {found}: lower the program "
                                  "with ExecuTorch's VulkanPartitioner (to_edge_transform_and_lower)")
    instructions = [type(i.instr_args).__name__ for chain in plan.chains for i in chain.instructions]
    if plan.operators or any(kind != "DelegateCall" for kind in instructions):
        names = [op.name for op in plan.operators]
        raise DelegateLayoutError(f"graph is not fully delegated: operators outside the delegate {names}, "
                                  f"instructions {instructions}: q4gsw reads only a program the VulkanPartitioner "
                                  "took whole")
    blob = pte.program.backend_delegate_data[plan.delegates[0].processed.index].data
    header = VulkanDelegateHeader.from_bytes(blob[: VulkanDelegateHeader.EXPECTED_LENGTH])
    return DelegateGraph(pte=pte, graph=flatbuffer_to_vk_graph(extract_vk_flatbuffer(blob)), blob=blob,
                         bytes_offset=header.bytes_offset)


def _named_buffer_index(pte: Any, key: str) -> int:
    pte_data = pte.named_data.pte_data
    if isinstance(pte_data, dict):
        return int(pte_data[key].buffer_index)
    for entry in pte_data:
        if getattr(entry, "key", None) == key:
            return int(entry.buffer_index)
    raise DelegateLayoutError(f"named data key {key} not found in the .pte")
