"""Evaluate a kernel's `when`, `overrides` and `dispatch` expressions for a shape on an adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from q4gsw.matrix import LIMIT_NAMES, Backend, Config, Kernel, evaluate
from q4gsw.webgpu.adapter import AdapterInfo

# Limits are unknown before an adapter is found: selection assumes a generous adapter, and the
# adapter's real limits decide at run time (a kernel that then cannot run is `unsupported`).
UNKNOWN_LIMIT = 1 << 30


class KernelUnsupported(RuntimeError):
    """The adapter lacks a feature or limit the kernel needs, or the dispatch is out of range."""


class ExpressionError(KernelUnsupported):
    """One of the kernel's expressions cannot be evaluated for this shape (e.g. a division by zero)."""

    def __init__(self, kernel: str, key: str, message: str) -> None:
        super().__init__(message)
        self.kernel = kernel
        self.key = key


def _evaluate(kernel: Kernel, key: str, expression: str, env: Mapping[str, Any]) -> Any:
    try:
        return evaluate(expression, env)
    except Exception as exc:  # any failure is the matrix's, for this shape: never a traceback
        shape = ", ".join(f"{n}={env[n]}" for n in ("M", "K", "N", "group_size") if n in env)
        raise ExpressionError(kernel.name, key, f"kernel '{kernel.name}': {key} `{expression}` cannot be evaluated "
                                                f"for {shape}: {type(exc).__name__}: {exc}") from None


def expression_environment(shape: Mapping[str, int], limits: Mapping[str, int] | None) -> dict[str, Any]:
    env: dict[str, Any] = dict(shape)
    for short, key in LIMIT_NAMES.items():
        env[short] = int(limits[key]) if limits is not None and key in limits else UNKNOWN_LIMIT
    return env


def _with_overrides(kernel: Kernel, env: dict[str, Any]) -> dict[str, Any]:
    constants = {}
    for name, value in kernel.overrides.items():
        constants[name] = _evaluate(kernel, f"overrides.{name}", value, env) if isinstance(value, str) else value
        env[name] = constants[name]
    return constants


def kernel_applies(kernel: Kernel, config: Config, backend: Backend) -> bool:
    """The kernel may run on this backend and its `when` holds for this shape."""
    if kernel.backends is not None and backend.name not in kernel.backends:
        return False
    env = expression_environment(config.shape_names(), None)
    _with_overrides(kernel, env)
    return bool(_evaluate(kernel, "when", kernel.when, env))


def resolve_kernel(kernel: Kernel, shape: Mapping[str, int],
                   info: AdapterInfo) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Check the kernel's needs against the adapter; return (override constants, workgroup counts)."""
    missing = [f for f in kernel.requires_features if f not in info.features]
    if missing:
        raise KernelUnsupported(f"kernel '{kernel.name}' needs adapter features {missing}, which {info.name} "
                                f"lacks through {info.webgpu}")
    for short, needed in kernel.requires_limits.items():
        have = int(info.limits.get(LIMIT_NAMES[short], 0))
        if have < needed:
            raise KernelUnsupported(f"kernel '{kernel.name}' needs {short} >= {needed}; {info.name} has {have}")
    env = expression_environment(shape, info.limits)
    constants = _with_overrides(kernel, env)
    if not _evaluate(kernel, "when", kernel.when, env):
        raise KernelUnsupported(f"kernel '{kernel.name}': `when = {kernel.when}` does not hold on {info.name} "
                                "(with the adapter's limits)")
    counts = tuple(_count(kernel, e, env) for e in kernel.dispatch)
    limit = int(info.limits.get("max-compute-workgroups-per-dimension", 65535))
    if any(c < 1 or c > limit for c in counts):
        raise KernelUnsupported(f"kernel '{kernel.name}' dispatch {counts} is outside 1..{limit} "
                                f"(max workgroups per dimension) for M={shape['M']}, N={shape['N']}")
    return constants, counts


def _count(kernel: Kernel, expression: str, env: Mapping[str, Any]) -> int:
    value = _evaluate(kernel, "dispatch", expression, env)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExpressionError(kernel.name, "dispatch", f"kernel '{kernel.name}': dispatch `{expression}` gives "
                                                       f"{value!r}, not a workgroup count") from exc
