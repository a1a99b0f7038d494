"""Kernel expressions (`when`, `dispatch`, `overrides`) and whether a kernel applies: pure, no wgpu.

One environment: the config's op's dims and the names the op derives from them (q4gsw.ops.expression_names),
the kernel's override values and the adapter's limits. Before an adapter is found (selection, `validate`)
every limit is UNKNOWN_LIMIT and every feature is assumed present: what cannot run even then cannot run
anywhere. The adapter's real limits and features decide at run time (a kernel that then cannot run is
`unsupported`).
"""

from __future__ import annotations

import ast
import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any

from simpleeval import EvalWithCompoundTypes

from q4gsw.matrix.values import AdapterInfo, Backend, Config, Kernel
from q4gsw.ops import expression_names, op_for

LIMIT_NAMES = {
    # expression name -> WebGPU limit key
    "max_workgroups_per_dimension": "max-compute-workgroups-per-dimension",
    "max_invocations_per_workgroup": "max-compute-invocations-per-workgroup",
    "max_workgroup_size_x": "max-compute-workgroup-size-x",
    "max_workgroup_storage_size": "max-compute-workgroup-storage-size",
    "max_storage_buffer_binding_size": "max-storage-buffer-binding-size",
}
EXPRESSION_FUNCTIONS = {"ceil": math.ceil, "min": min, "max": max, "floor": math.floor}
UNKNOWN_LIMIT = 1 << 30  # a limit before an adapter is known: generous, so only the real adapter can refuse
UNKNOWN_DISPATCH_LIMIT = 1 << 30


class KernelUnsupported(RuntimeError):
    """The adapter lacks a feature or limit the kernel needs, or the dispatch is out of range."""


class ExpressionError(KernelUnsupported):
    """One of the kernel's expressions cannot be evaluated for this shape (e.g. a division by zero)."""

    def __init__(self, kernel: str, key: str, message: str) -> None:
        super().__init__(message)
        self.kernel = kernel
        self.key = key


def evaluate(expression: str, names: Mapping[str, Any]) -> Any:
    return EvalWithCompoundTypes(names=dict(names), functions=EXPRESSION_FUNCTIONS).eval(expression)


def split_dispatch(text: str) -> tuple[str, ...]:
    """'a, b, c' -> ('a', 'b', 'c'), splitting only on top-level commas."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return tuple(parts)


def environment(shape: Mapping[str, int], limits: Mapping[str, int] | None) -> dict[str, Any]:
    """Shape names plus every limit name: the adapter's value, or UNKNOWN_LIMIT without an adapter."""
    env: dict[str, Any] = dict(shape)
    for short, key in LIMIT_NAMES.items():
        env[short] = int(limits[key]) if limits is not None and key in limits else UNKNOWN_LIMIT
    return env


def _evaluate(kernel: Kernel, key: str, expression: str, env: Mapping[str, Any]) -> Any:
    try:
        return evaluate(expression, env)
    except Exception as exc:  # any failure is the matrix's, for this shape: never a traceback
        raise ExpressionError(kernel.name, key, f"kernel '{kernel.name}': {key} `{expression}` cannot be evaluated "
                                                f"for {_shape(kernel, env, expression)}: {type(exc).__name__}: "
                                                f"{exc}") from None


def _shape(kernel: Kernel, env: Mapping[str, Any], *expressions: str) -> str:
    """The op's dims, then every other name the expressions use (a derived name, a limit, an override), as
    name=value: what a failing expression was evaluated with, without the derived names it does not read."""
    used: set[str] = set()
    for expression in expressions:
        with contextlib.suppress(SyntaxError):  # validate refuses such an expression; the dims still say the shape
            used |= {node.id for node in ast.walk(ast.parse(expression, mode="eval")) if isinstance(node, ast.Name)}
    dims = [d.name for d in op_for(kernel.op).dims]
    return ", ".join(f"{n}={env[n]}" for n in [*dims, *(n for n in env if n in used and n not in dims)] if n in env)


def _with_overrides(kernel: Kernel, env: dict[str, Any]) -> dict[str, Any]:
    overrides = {}
    for name, value in kernel.overrides.items():
        overrides[name] = _evaluate(kernel, f"overrides.{name}", value, env) if isinstance(value, str) else value
        env[name] = overrides[name]
    return overrides


def written_for(kernel: Kernel, device_type: str, adapter_name: str) -> bool:
    """The kernel is written for adapters like this (its op's device type and adapter-name pattern).

    With a backend, `adapter_name` is the backend's own pattern (e.g. "SwiftShader"), read as a sample name."""
    if kernel.device_type and device_type and kernel.device_type != device_type:
        return False
    return not kernel.adapter_name or bool(re.search(kernel.adapter_name, adapter_name))


def kernel_applies(kernel: Kernel, config: Config, backend: Backend) -> bool:
    """The kernel computes this config's op, is written for this backend's adapters, and its `when` holds."""
    if kernel.op != config.op or not written_for(kernel, backend.device_type, backend.adapter_name):
        return False
    env = environment(expression_names(config), None)
    _with_overrides(kernel, env)
    return bool(_evaluate(kernel, "when", kernel.when, env))


def resolve_kernel(kernel: Kernel, shape: Mapping[str, int],
                   adapter: AdapterInfo | None) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Check the kernel's needs against the adapter (None: the most generous adapter imaginable); return
    (override values, workgroup counts)."""
    name = adapter.name if adapter is not None else "any adapter"
    if adapter is not None:
        missing = [f for f in kernel.requires_features if f not in adapter.features]
        if missing:
            raise KernelUnsupported(f"kernel '{kernel.name}' needs adapter features {missing}, which {name} "
                                    f"lacks through {adapter.webgpu}")
        if not written_for(kernel, "CPU" if adapter.is_cpu else "GPU", adapter.name):
            raise KernelUnsupported(f"kernel '{kernel.name}' is written for {kernel.device_type or 'any'} adapters "
                                    f"named /{kernel.adapter_name or '.*'}/, not {name}")
    limits = adapter.limits if adapter is not None else None
    for short, needed in kernel.requires_limits.items():
        have = int(limits.get(LIMIT_NAMES[short], 0)) if limits is not None else UNKNOWN_LIMIT
        if have < needed:
            raise KernelUnsupported(f"kernel '{kernel.name}' needs {short} >= {needed}; {name} has {have}")
    env = environment(shape, limits)
    overrides = _with_overrides(kernel, env)
    if not _evaluate(kernel, "when", kernel.when, env):
        raise KernelUnsupported(f"kernel '{kernel.name}': `when = {kernel.when}` does not hold on {name} "
                                "(with the adapter's limits)")
    counts = tuple(_count(kernel, e, env) for e in kernel.dispatch)
    limit = int(limits.get(LIMIT_NAMES["max_workgroups_per_dimension"], 65535)) if limits is not None \
        else UNKNOWN_DISPATCH_LIMIT
    if any(c < 1 or c > limit for c in counts):
        raise KernelUnsupported(f"kernel '{kernel.name}' dispatch {counts} is outside 1..{limit} "
                                f"(max workgroups per dimension) for {_shape(kernel, env, *kernel.dispatch)}")
    return overrides, counts


def _count(kernel: Kernel, expression: str, env: Mapping[str, Any]) -> int:
    value = _evaluate(kernel, "dispatch", expression, env)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExpressionError(kernel.name, "dispatch", f"kernel '{kernel.name}': dispatch `{expression}` gives "
                                                       f"{value!r}, not a workgroup count") from exc
