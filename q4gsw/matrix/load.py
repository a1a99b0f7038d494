"""Load and validate matrix.toml into immutable value types.

Every error a user can cause here names the file, the config (or table) and the key, and says how
to fix it; the CLI turns a MatrixError into exit code 2 before anything is exported or run.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from q4gsw.matrix.checker import Checker, MatrixError, suggest
from q4gsw.matrix.expressions import (
    KernelUnsupported,
    kernel_applies,
    resolve_kernel,
    split_dispatch,
    written_for,
)
from q4gsw.matrix.kernel_tables import DEVICE_TYPES, load_kernels, make_kernel
from q4gsw.matrix.values import DEFAULT_OP, Backend, Config, Kernel, KernelSet, Tolerance
from q4gsw.ops import expression_names, op_for, registry

__all__ = [
    "Backend",
    "Config",
    "Kernel",
    "KernelSet",
    "Matrix",
    "MatrixError",
    "Tolerance",
    "load_matrix",
    "make_kernel",
    "split_dispatch",
]

TIERS = ("required", "heavy", "optional")
PROVISIONERS = ("swiftshader", "lavapipe", "native")
APIS = ("Vulkan", "Metal", "D3D12", "any")


@dataclass(frozen=True)
class Matrix:
    path: Path
    configs: tuple[Config, ...]
    backends: Mapping[str, Backend]
    kernels: tuple[Kernel, ...]
    kernel_sets: Mapping[str, KernelSet] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def root(self) -> Path:
        return self.path.parent

    def config(self, name: str) -> Config:
        for c in self.configs:
            if c.name == name:
                return c
        suggestion = suggest(name, [c.name for c in self.configs])
        raise MatrixError(self.path, f"config '{name}'", "name", "no such config",
                          f"{suggestion}see `python -m q4gsw list` for the names")

    def backend(self, name: str) -> Backend:
        if name not in self.backends:
            suggestion = suggest(name, list(self.backends))
            raise MatrixError(self.path, f"backend '{name}'", "backend", "no such backend",
                              f"{suggestion}choose one of {sorted(self.backends)}")
        return self.backends[name]

    def select(self, tiers: tuple[str, ...] | None = None, names: tuple[str, ...] = (),
               suites: tuple[str, ...] | None = None) -> tuple[Config, ...]:
        if names:
            return tuple(self.config(n) for n in names)
        return tuple(c for c in self.configs
                     if (tiers is None or c.tier in tiers) and (suites is None or c.suite in suites))

    def tolerance_for(self, config: Config, backend: Backend, kernel: Kernel | None) -> Tolerance:
        """Backend override beats kernel tolerance beats the config's own."""
        if config.name in backend.tolerance_overrides:
            return backend.tolerance_overrides[config.name]
        if kernel is not None and kernel.tolerance is not None:
            return kernel.tolerance
        return config.tolerance


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------

_TOP_KEYS = ("schema_version", "defaults", "backend", "kernel", "kernel_set", "config")
_DEFAULT_KEYS = ("weight_seed", "inputs", "suite", "timeout_s", "weights", "op", "drift_factor")  # + any op's dim
_CONFIG_KEYS = ("name", "tier", "suite", "inputs", "weights", "weight_seed", "timeout_s", "tolerance",
                "upstream_tolerance", "f16_accumulate_gemm", "op", "drift_factor")  # + the config's op's dims
_KERNEL_SET_KEYS = ("op", "folder", "generator", "route", "kernel")
_BACKEND_KEYS = ("description", "api", "adapter_name", "device_type", "provision", "tolerance", "webgpu",
                 "dawn_toggles")
WEBGPU_IMPLEMENTATIONS = ("wgpu-native", "dawn")


def load_matrix(path: Path | str, known_inputs: tuple[str, ...] | None = None,
                known_weights: tuple[str, ...] | None = None) -> Matrix:
    from q4gsw.ops import inputs as input_registry  # late: keeps matrix importable without numpy users

    path = Path(path)
    known_inputs = known_inputs or tuple(input_registry.INPUTS)
    known_weights = known_weights or tuple(input_registry.WEIGHTS)
    check = Checker(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise check.fail("file", "-", "file not found", "pass --matrix PATH or run from the repository root") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory, unreadable, or not UTF-8
        raise check.fail("file", "-", f"cannot be read: {type(exc).__name__}: {exc}",
                         "pass --matrix PATH to a readable UTF-8 TOML file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise check.fail("TOML syntax", "-", str(exc), "fix the TOML syntax at that line and column") from exc

    check.known_keys(data, _TOP_KEYS, "top level")
    if data.get("schema_version", 1) != 1:
        raise check.fail("top level", "schema_version", f"unsupported version {data['schema_version']!r}",
                         "this q4gsw reads schema_version = 1")
    defaults = check.table(data.get("defaults", {}), "[defaults]", "defaults")
    every_dim = tuple(dict.fromkeys(d.name for op in registry().values() for d in op.dims))
    check.known_keys(defaults, (*_DEFAULT_KEYS, *every_dim), "[defaults]")  # a default dim: for ops that have it

    backends = _load_backends(check, data)
    table = check.table(data.get("kernel", {}), "top level", "kernel")
    if not table:
        raise check.fail("top level", "kernel", "no kernels defined", "add at least one [kernel.NAME] table")
    kernels = load_kernels(check, table, "kernel", check.path.parent)
    kernel_sets = _load_kernel_sets(check, data)
    configs = _load_configs(check, data, defaults, known_inputs, known_weights)

    names = {c.name for c in configs}
    for backend in backends.values():
        for config_name in backend.tolerance_overrides:
            if config_name not in names:
                raise check.fail(f"[backend.{backend.name}]", f"tolerance.{config_name}", "names no config",
                                 f"{suggest(config_name, sorted(names))}use a config name from [[config]]")
    return Matrix(path=path.resolve(), configs=configs, backends=MappingProxyType(backends), kernels=kernels,
                  kernel_sets=MappingProxyType(kernel_sets))


def _load_kernel_sets(check: Checker, data: Mapping[str, Any]) -> dict[str, KernelSet]:
    sets = {}
    for name, raw in check.table(data.get("kernel_set", {}), "top level", "kernel_set").items():
        where = f"[kernel_set.{name}]"
        check.name(name, where, "kernel set name")
        raw = check.table(raw, where, f"kernel_set.{name}")
        check.known_keys(raw, _KERNEL_SET_KEYS, where)
        for key in ("generator", "route", "kernel"):
            if key not in raw:
                raise check.fail(where, key, "missing", f"add {key} = ... (see docs/executorch.md)")
        set_op = check.op(raw.get("op", DEFAULT_OP), where)
        kernels = load_kernels(check, check.table(raw["kernel"], where, "kernel"), f"kernel_set.{name}.kernel", None,
                                set_op)
        route = raw["route"]
        if not isinstance(route, list) or not route or not all(isinstance(r, str) for r in route):
            raise check.fail(where, "route", "expected a non-empty list of kernel names (the runtime's order)",
                             'write route = ["a", "b"]')
        declared = [k.name for k in kernels]
        for entry in route:
            if entry not in declared:
                raise check.fail(where, "route", f"'{entry}' is not a kernel of this set",
                                 f"{suggest(entry, declared)}declare [kernel_set.{name}.kernel.{entry}]")
        if "folder" not in raw and op_for(set_op).executorch_folder is None:  # the op names none: say so
            raise check.fail(where, "folder", f"missing (op {set_op} has none)", 'add folder = "PATH/IN/CHECKOUT"')
        folder = check.string(raw.get("folder", op_for(set_op).executorch_folder), where, "folder")
        sets[name] = KernelSet(name=name, folder=folder, generator=check.string(raw["generator"], where, "generator"),
                               route=tuple(route), kernels=kernels, op=set_op)
    return sets


def _load_backends(check: Checker, data: Mapping[str, Any]) -> dict[str, Backend]:
    table = check.table(data.get("backend", {}), "top level", "backend")
    if not table:
        raise check.fail("top level", "backend", "no backends defined", "add at least one [backend.NAME] table")
    backends: dict[str, Backend] = {}
    for name, raw in table.items():
        where = f"[backend.{name}]"
        check.name(name, where, "backend name")
        raw = check.table(raw, where, f"backend.{name}")
        check.known_keys(raw, _BACKEND_KEYS, where)
        for key in ("api", "adapter_name", "device_type", "provision"):
            if key not in raw:
                raise check.fail(where, key, "missing", f"add {key} = \"...\" (see docs/matrix.md)")
        adapter_name = check.pattern(raw["adapter_name"], where, "adapter_name")
        overrides = {}
        for config_name, tol in check.table(raw.get("tolerance", {}), where, "tolerance").items():
            overrides[config_name] = check.tolerance(tol, f"{where} config '{config_name}'", f"backend:{name}")
        backends[name] = Backend(
            name=name, description=check.string(raw.get("description", ""), where, "description"),
            api=check.string(raw["api"], where, "api", APIS), adapter_name=adapter_name,
            device_type=check.string(raw["device_type"], where, "device_type", DEVICE_TYPES),
            provision=check.string(raw["provision"], where, "provision", PROVISIONERS),
            tolerance_overrides=MappingProxyType(overrides),
            webgpu=check.string(raw.get("webgpu", "wgpu-native"), where, "webgpu", WEBGPU_IMPLEMENTATIONS),
            dawn_toggles=check.toggles(raw, where))
    return backends


def _load_configs(check: Checker, data: Mapping[str, Any], defaults: Mapping[str, Any],
                  known_inputs: tuple[str, ...], known_weights: tuple[str, ...]) -> tuple[Config, ...]:
    raw_configs = data.get("config", [])
    if isinstance(raw_configs, dict):
        raise check.fail("top level", "config", "is a single table ([config]), not an array of tables",
                         "write each config under [[config]] (double brackets)")
    if not isinstance(raw_configs, list) or not raw_configs:
        raise check.fail("top level", "config", "no configs defined", "add at least one [[config]] table")
    configs: list[Config] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_configs, start=1):
        raw = check.table(raw, f"config #{index}", "config")
        if "name" not in raw:
            raise check.fail(f"config #{index}", "name", "missing", "add name = \"...\" to this [[config]]")
        name = check.string(raw["name"], f"config #{index}", "name")
        where = f"config '{name}'"
        check.name(name, where, "name")
        if name in seen:
            raise check.fail(where, "name", f"duplicate name (also config #{seen[name]})",
                             "give each config a unique name")
        twin = next((other for other in seen if other.lower() == name.lower()), None)
        if twin is not None:  # DIR/<config> folders would be one folder on macOS and Windows
            raise check.fail(where, "name", f"differs from config '{twin}' only in case",
                             "give each config a name that is unique ignoring case")
        seen[name] = index
        configs.append(_load_config(check, raw, name, where, defaults, known_inputs, known_weights))
    return tuple(configs)


def _load_config(check: Checker, raw: Mapping[str, Any], name: str, where: str, defaults: Mapping[str, Any],
                 known_inputs: tuple[str, ...], known_weights: tuple[str, ...]) -> Config:
    config_op = check.op({**defaults, **raw}.get("op", DEFAULT_OP), where)
    op = op_for(config_op)
    check.config_keys(raw, where, config_op, own_dims := tuple(d.name for d in op.dims), _CONFIG_KEYS)
    # [defaults] give a dim only to an op that declares it, `inputs`/`weights` only to linear_q4gsw's configs
    dropped = {k for k in defaults if k not in _DEFAULT_KEYS and k not in own_dims}
    if config_op != DEFAULT_OP:
        known_inputs, known_weights = op.input_names, op.weight_names or known_weights
        dropped |= {"inputs", "weights"}
    merged = {**{k: v for k, v in defaults.items() if k not in dropped}, **raw}
    for key in ("tier", "tolerance"):
        if key not in merged:
            raise check.fail(where, key, "missing", f"add {key} = ... to this config or to [defaults]")
    dims = check.dims(merged, where, config_op, op.dims)
    config_inputs = merged.get("inputs", [op.input_names[0]])
    if isinstance(config_inputs, str):
        config_inputs = [config_inputs]
    if not isinstance(config_inputs, list) or not config_inputs:
        raise check.fail(where, "inputs", "expected a non-empty list of input names", 'write inputs = ["ramp"]')
    for input_name in config_inputs:
        check.string(input_name, where, "inputs", known_inputs)
    weights = check.string(merged.get("weights", known_weights[0] if config_op != DEFAULT_OP else "linear_init"),
                           where, "weights", known_weights)
    timeout = check.number(merged.get("timeout_s", 900), where, "timeout_s")
    if timeout == 0:
        raise check.fail(where, "timeout_s", "must be positive", "use a number of seconds > 0")
    config = Config(
        name=name, dims=dims, tier=check.string(merged["tier"], where, "tier", TIERS),
        suite=check.name(check.string(merged.get("suite", "llama"), where, "suite"), where, "suite"),
        inputs=tuple(config_inputs), weights=weights,
        weight_seed=check.integer(merged.get("weight_seed", 0), where, "weight_seed", positive=False),
        timeout_s=timeout, tolerance=check.tolerance(merged["tolerance"], where, "config"),
        upstream_tolerance=check.upstream_tolerance(raw.get("upstream_tolerance"), where),
        f16_accumulate_gemm=check.boolean(raw.get("f16_accumulate_gemm", False), where, "f16_accumulate_gemm"),
        op=config_op, drift_factor=check.drift_factor(merged.get("drift_factor"), where))
    for problem in op.shape_problems(config):
        raise check.fail(where, problem.key, problem.problem, problem.fix)
    return config


MAX_SEED = 2**64 - 1  # torch.manual_seed (torch_linear weights) takes an unsigned 64-bit seed


def check_runnable(matrix: Matrix) -> None:
    """What `validate` checks beyond the loader: every config can run somewhere, and every backend can run every
    required config. Raise MatrixError for a config no kernel of the matrix (or of a declared kernel set) can run on
    any of its backends (`when` false, or a dispatch outside 1..2^30 even on the most generous adapter, or an
    expression that cannot be evaluated for its shape), for a backend on which a required config has no kernel,
    or for weights that cannot be generated."""
    kernels = [*matrix.kernels, *(k for s in matrix.kernel_sets.values() for k in s.kernels)]
    for config in matrix.configs:
        where = f"config '{config.name}'"
        if config.weight_seed > MAX_SEED:
            raise MatrixError(matrix.path, where, "weight_seed", f"{config.weight_seed} does not fit 64 bits",
                              f"use a seed from 0 to {MAX_SEED}")
        reasons: list[str] = []
        if not any(_runs_anywhere(kernel, config, matrix, reasons) for kernel in kernels):
            op = op_for(config)
            raise MatrixError(matrix.path, where, "/".join(d.name for d in op.dims),
                              f"no kernel can run {op.shape_text(config.dims)} on any "
                              f"backend ({'; '.join(reasons) or f'no kernel computes op {config.op}'})",
                              "change the shape, or add a kernel whose `when` and dispatch hold for it")
    for backend in matrix.backends.values():
        for config in (c for c in matrix.configs if c.tier == "required"):
            if all(_why_not(kernel, config, backend) for kernel in matrix.kernels):
                raise MatrixError(matrix.path, f"[backend.{backend.name}]", "device_type/adapter_name",
                                  f"required config '{config.name}' ({config.op}) has no kernel written for "
                                  f"{backend.device_type} adapters named like /{backend.adapter_name}/",
                                  "give the backend a device_type and adapter_name some kernel is written for, or "
                                  "widen a kernel's device_type/adapter_name (docs/backends.md)")


def _why_not(kernel: Kernel, config: Config, backend: Backend) -> str:
    """'' when the kernel runs the config on the backend (on the most generous adapter), else why not."""
    try:
        if not kernel_applies(kernel, config, backend):
            return f"{kernel.name}: `when = {kernel.when}` does not hold"
        resolve_kernel(kernel, expression_names(config), None)
    except KernelUnsupported as exc:
        return str(exc)
    return ""


def _runs_anywhere(kernel: Kernel, config: Config, matrix: Matrix, reasons: list[str]) -> bool:
    if kernel.op != config.op:
        return False
    backends = [b for b in matrix.backends.values() if written_for(kernel, b.device_type, b.adapter_name)]
    reason = _why_not(kernel, config, backends[0]) if backends else f"{kernel.name}: no backend of the matrix runs it"
    if reason:
        reasons.append(reason)
    return not reason
