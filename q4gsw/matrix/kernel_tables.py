"""matrix.toml's kernel tables ([kernel.X], a kernel set's [kernel_set.S.kernel.X] and their `before` chains) as
Kernel values, and make_kernel, the one constructor of a Kernel. Every error names the file, table and key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from q4gsw.matrix.checker import Checker, suggest
from q4gsw.matrix.expressions import LIMIT_NAMES, environment, split_dispatch
from q4gsw.matrix.values import DEFAULT_OP, Kernel, Tolerance
from q4gsw.ops import placeholder_names, registry

DEVICE_TYPES = ("CPU", "GPU")
_KERNEL_KEYS = ("file", "when", "dispatch", "overrides", "requires_features", "requires_limits", "tolerance",
                "device_type", "adapter_name", "op", "template", "before", "stage", "variant")


def make_kernel(name: str, file: str, dispatch: str | tuple[str, ...], *, when: str = "1",
                overrides: Mapping[str, str | int | float] | None = None, requires_features: tuple[str, ...] = (),
                requires_limits: Mapping[str, int] | None = None, tolerance: Tolerance | None = None,
                device_type: str = "", adapter_name: str = "", op: str = DEFAULT_OP, text: str | None = None,
                origin: str = "", template: str = "", before: Kernel | None = None, stage: str = "",
                variant: str = "") -> Kernel:
    """The one constructor for a Kernel: from matrix.toml, from `check --kernel`, a mutant or a kernel set."""
    return Kernel(name=name, file=file, when=when,
                  dispatch=split_dispatch(dispatch) if isinstance(dispatch, str) else tuple(dispatch),
                  overrides=MappingProxyType(dict(overrides or {})), requires_features=tuple(requires_features),
                  requires_limits=MappingProxyType(dict(requires_limits or {})), tolerance=tolerance,
                  device_type=device_type, adapter_name=adapter_name, op=op, text=text, origin=origin or file,
                  template=template, before=before, stage=stage, variant=variant)


def load_kernels(check: Checker, table: Mapping[str, Any], prefix: str, base: Path | None,
                 op: str | None = None, table_name: str = "") -> tuple[Kernel, ...]:
    """Kernel tables; `base` is where `file` must exist (None: in a tree given at run time); `where` names the
    table in errors (`table_name`, default [prefix.NAME])."""
    kernels = []
    for name, raw in table.items():
        where = table_name or f"[{prefix}.{name}]"
        check.name(name, where, "kernel name")
        raw = check.table(raw, where, f"kernel.{name}")
        check.known_keys(raw, _KERNEL_KEYS, where)
        for key in ("file", "when", "dispatch"):
            if key not in raw:
                raise check.fail(where, key, "missing", f"add {key} = \"...\" (see docs/kernels.md)")
        kernel_file = check.string(raw["file"], where, "file")
        if base is not None:
            check.kernel_file(where, kernel_file, base)
        if op is not None and raw.get("op", op) != op:  # it ran as `op` whatever it said: said, never ignored
            raise check.fail(where, "op", f"is {raw['op']!r}, but this table's kernels run in op '{op}' (its "
                             "kernel's or kernel set's)", f'remove op, or write op = "{op}"')
        kernel_op = op or check.op(raw.get("op", DEFAULT_OP), where)
        overrides_raw = check.table(raw.get("overrides", {}), where, "overrides")
        names = environment(placeholder_names(kernel_op), None)
        overrides: dict[str, str | int | float] = {}
        for key, value in overrides_raw.items():
            if isinstance(value, str):
                check.expression(value, where, f"overrides.{key}", names)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise check.fail(where, f"overrides.{key}", f"expected a number or expression, got {value!r}",
                                 "write a number or a quoted expression")
            overrides[key] = value
        names.update({k: 64 for k in overrides})
        dispatch_text = check.string(raw["dispatch"], where, "dispatch")
        dispatch = split_dispatch(dispatch_text)
        if not 1 <= len(dispatch) <= 3:
            raise check.fail(where, "dispatch", f"needs 1 to 3 workgroup counts, got {len(dispatch)}",
                             "write \"X\", \"X, Y\" or \"X, Y, Z\"")
        for part in dispatch:
            check.expression(part, where, "dispatch", names)
        when = check.expression(raw["when"], where, "when", names)
        limits_raw = check.table(raw.get("requires_limits", {}), where, "requires_limits")
        for key, value in limits_raw.items():
            if key not in LIMIT_NAMES:
                raise check.fail(where, f"requires_limits.{key}", "unknown limit",
                                 f"{suggest(key, list(LIMIT_NAMES))}choose from {', '.join(LIMIT_NAMES)}")
            check.integer(value, where, f"requires_limits.{key}")
        features = raw.get("requires_features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise check.fail(where, "requires_features", "expected a list of feature names",
                             'write e.g. requires_features = ["shader-f16"]')
        device_type = check.string(raw.get("device_type", ""), where, "device_type", ("", *DEVICE_TYPES))
        adapter_name = check.pattern(raw.get("adapter_name", ""), where, "adapter_name")
        tolerance = check.tolerance(raw["tolerance"], where, f"kernel:{name}") if "tolerance" in raw else None
        before = _load_before(check, raw, where, f"{prefix}.{name}", base, kernel_op) if "before" in raw else None
        kernels.append(make_kernel(name, kernel_file, dispatch, when=when, overrides=overrides,
                                   requires_features=tuple(features), requires_limits=dict(limits_raw),
                                   tolerance=tolerance,
                                   device_type=device_type, adapter_name=adapter_name, op=kernel_op,
                                   template=check.string(raw.get("template", ""), where, "template"),
                                   before=before, stage=check.stage(raw, where, kernel_op),
                                   variant=check.string(raw.get("variant", ""), where, "variant")))
    return tuple(kernels)


def _load_before(check: Checker, raw: Mapping[str, Any], where: str, prefix: str, base: Path | None,
                 op: str) -> Kernel:
    """The kernels the runtime dispatches first: one [X.before] table, or an array [[X.before]] of them in dispatch
    order (the first dispatched first); each has a kernel's keys, plus `name` (default "before"; a kernel set's
    templated one without `variant` is expanded as the variant `name`). Returned as a chain: the last dispatched,
    whose `before` is the one before."""
    check.chains(where, op)
    tables = raw["before"] if isinstance(raw["before"], list) else [raw["before"]]
    if not tables:
        raise check.fail(where, "before", "is an empty array", f"remove it, or add [[{prefix}.before]] tables")
    if len(tables) > 1 and not registry()[op].stages:  # before_bindings: the buffers of one kernel, each bound alike
        raise check.fail(where, "before", f"is a chain of {len(tables)}, but op '{op}' binds one kernel before its "
                         "own (before_bindings; no stages)", f"keep one [{prefix}.before] table, or give the op "
                         "stages (Op.stages, docs/ops.md, Chains)")
    before = None
    for index, table in enumerate(tables, start=1):
        here = f"[{prefix}.before]" if len(tables) == 1 else f"[{prefix}.before] #{index}"
        table = dict(check.table(table, here, "before"))
        if "before" in table:
            raise check.fail(here, "before", "a `before` cannot have a `before` of its own",
                             f"list every dispatch in order as [[{prefix}.before]] tables instead")
        if "tolerance" in table:  # only the last kernel's output is compared
            raise check.fail(here, "tolerance", "a kernel dispatched before is never compared with a golden",
                             f"remove it (the tolerance of [{prefix}] or its config applies to the chain's output)")
        name = check.string(table.pop("name", "before"), here, "name")
        (loaded,) = load_kernels(check, {name: table}, prefix, base, op, table_name=here)
        before = replace(loaded, before=before)
    assert before is not None
    return before
