"""When ExecuTorch's WebGPU runtime fuses SwiGLU: runtime/passes/SwiGLU.cpp's detector, restated over a delegate's
calls (no executorch needed: unit-testable on hand-written chains).

The pass replaces five calls of the Vulkan delegate by one dispatch of mul/silu_mul_fused.wgsl when, and only
when, they are exactly the q4 gate/up MLP pattern:

  gate = et_vk.linear_q4gsw(x, ...)        up = et_vk.linear_q4gsw(x, ...)    (the SAME input x, two calls)
  s    = aten.sigmoid(gate)
  t    = aten.mul(gate, s)  or  aten.mul(s, gate)
  out  = aten.mul(t, up)    or  aten.mul(up, t)

in that order (gate's linear < sigmoid < first mul < second mul, up's linear < second mul), each of gate, up, s, t,
out defined once, gate used exactly 3 times in the chain (its definition, the sigmoid, the first mul), up, s and t
twice, none of gate, s, t a graph output. Anything else (a linear of another kind, e.g. 8da4w's
et_vk.linear_dq8ca_q4gsw; separate inputs; an intermediate also consumed elsewhere) runs unfused: sigmoid.wgsl and
binary mul twice. Not restated here: the dtype/shape/buffer checks on the tensors (fp32, equal dims), which every
graph q4gsw exports meets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

LINEAR = "et_vk.linear_q4gsw.default"
SIGMOID = "aten.sigmoid.default"
MUL = "aten.mul.Tensor"
FUSED_DISPATCH = "webgpu.silu_mul_fused"  # the runtime's dispatch (shader silu_mul_fused), not a delegate operator


@dataclass(frozen=True)
class Fusion:
    """One fused SwiGLU: the value ids the fused kernel binds (gate b0, up b1, out b2) and the input of both linears."""

    x: int
    gate: int
    up: int
    out: int


def find_fusions(calls: Sequence[tuple[str, Sequence[int]]], outputs: Sequence[int] = ()) -> list[Fusion]:
    """Every SwiGLU the runtime pass would fuse in a delegate chain of (operator, args) calls."""
    occurrences: Counter[int] = Counter(a for _, args in calls for a in args)
    producer: dict[int, int] = {}
    definitions: Counter[int] = Counter()
    for index, (name, args) in enumerate(calls):
        output = _output(name, args)
        if output is not None:
            producer[output] = index
            definitions[output] += 1
    fusions = []
    for index, (name, args) in enumerate(calls):
        if name == MUL and len(args) == 3:
            found = [f for silu, up in ((args[0], args[1]), (args[1], args[0]))
                     if (f := _fusion(calls, index, silu, up, producer, definitions, occurrences, outputs))]
            if len(found) == 1:
                fusions.append(found[0])
    return fusions


def _output(name: str, args: Sequence[int]) -> int | None:
    if name == LINEAR and len(args) == 6:
        return args[5]
    if name == SIGMOID and len(args) == 2:
        return args[1]
    if name == MUL and len(args) == 3:
        return args[2]
    return None


def _fusion(calls: Sequence[tuple[str, Sequence[int]]], mul2: int, silu: int, up: int, producer: dict[int, int],
            definitions: Counter[int], occurrences: Counter[int], outputs: Sequence[int]) -> Fusion | None:
    mul1 = producer.get(silu)
    if mul1 is None or calls[mul1][0] != MUL:
        return None
    a, b = calls[mul1][1][:2]
    for gate, s in ((a, b), (b, a)):
        sig = producer.get(s)
        if sig is None or calls[sig][0] != SIGMOID or calls[sig][1][0] != gate:
            continue
        gate_op, up_op = producer.get(gate), producer.get(up)
        if gate_op is None or up_op is None or gate_op == up_op or calls[gate_op][0] != LINEAR \
                or calls[up_op][0] != LINEAR or calls[gate_op][1][0] != calls[up_op][1][0]:
            continue
        out = calls[mul2][1][2]
        ids = (gate, up, s, silu, out)
        if len(set(ids)) != 5 or any(definitions[i] != 1 for i in ids):
            continue
        if (occurrences[gate], occurrences[up], occurrences[s], occurrences[silu]) != (3, 2, 2, 2):
            continue
        if not (gate_op < sig < mul1 < mul2 and up_op < mul2) or {gate, s, silu} & set(outputs):
            continue
        return Fusion(x=calls[gate_op][1][0], gate=gate, up=up, out=out)
    return None
