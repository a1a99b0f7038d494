"""Load and validate matrix.toml into immutable value types.

Every error a user can cause here names the file, the config (or table) and the key, and says how
to fix it; the CLI turns a MatrixError into exit code 2 before anything is exported or run.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression

TIERS = ("required", "heavy", "optional")
PROVISIONERS = ("swiftshader", "lavapipe", "native")
DEVICE_TYPES = ("CPU", "GPU")
APIS = ("Vulkan", "Metal", "D3D12", "any")

# Names usable in kernel `when`, `dispatch` and `overrides` expressions.
SHAPE_NAMES = ("M", "N", "K", "K_packed", "group_size", "f16_accumulate_gemm")
LIMIT_NAMES = {
    # expression name -> wgpu limit key
    "max_workgroups_per_dimension": "max-compute-workgroups-per-dimension",
    "max_invocations_per_workgroup": "max-compute-invocations-per-workgroup",
    "max_workgroup_size_x": "max-compute-workgroup-size-x",
    "max_workgroup_storage_size": "max-compute-workgroup-storage-size",
    "max_storage_buffer_binding_size": "max-storage-buffer-binding-size",
}
EXPRESSION_FUNCTIONS = {"ceil": math.ceil, "min": min, "max": max, "floor": math.floor}


MAX_BINDING_BYTES = 2**31  # the largest storage binding of any adapter seen (H100: 2 GiB)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class MatrixError(Exception):
    """A problem in matrix.toml that the user must fix; always names file, config/table and key."""

    def __init__(self, path: Path | str, where: str, key: str, problem: str, fix: str) -> None:
        self.path = str(path)
        self.where = where
        self.key = key
        self.problem = problem
        self.fix = fix
        # One line, always: multi-line causes (regex, expression or decoder messages) are joined with ' | '.
        problem = " | ".join(line.strip() for line in str(problem).splitlines() if line.strip())
        self.problem = problem
        message = f"{self.path}: {where}: key '{key}': {problem} — {fix}"
        # Names from the file (quoted TOML keys may hold a newline) are shown escaped.
        super().__init__("".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message))


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    justification: str
    source: str = "config"  # where it came from: config, kernel:<name>, backend:<name>

    def bound(self, golden_abs: Any) -> Any:
        return self.atol + self.rtol * golden_abs


@dataclass(frozen=True)
class Config:
    name: str
    M: int
    K: int
    N: int
    group_size: int
    tier: str
    suite: str
    inputs: tuple[str, ...]
    weights: str
    weight_seed: int
    timeout_s: float
    tolerance: Tolerance
    upstream_tolerance: Tolerance | None = None  # ExecuTorch's own test bound (abs OR rel), shown beside ours
    f16_accumulate_gemm: bool = False  # ExecuTorch runtime option `enable_f16_accumulate_gemm` for this config

    @property
    def flops(self) -> int:
        return 2 * self.M * self.K * self.N

    @property
    def packed_weight_bytes(self) -> int:
        return self.N * self.K // 2

    @property
    def scale_bytes(self) -> int:
        return 4 * (self.K // self.group_size) * self.N

    @property
    def cost(self) -> float:
        """Relative cost estimate used to balance shards: FLOPs plus bytes moved."""
        return float(self.flops + self.packed_weight_bytes + self.scale_bytes + 4 * self.M * (self.K + self.N))

    def shape_names(self) -> dict[str, int]:
        return {"M": self.M, "N": self.N, "K": self.K, "K_packed": self.K // 2, "group_size": self.group_size,
                "f16_accumulate_gemm": int(self.f16_accumulate_gemm)}


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    api: str
    adapter_name: str  # regular expression the adapter's device name must match
    device_type: str
    provision: str
    tolerance_overrides: Mapping[str, Tolerance] = field(default_factory=lambda: MappingProxyType({}))
    webgpu: str = "wgpu-native"  # the WebGPU implementation: wgpu-native (naga) or dawn (Tint)
    dawn_toggles: tuple[str, ...] = ()  # Dawn toggles to enable (e.g. vulkan_enable_f16_on_nvidia)

    def matches(self, info: Mapping[str, Any]) -> bool:
        """True if a wgpu adapter info dict is an adapter of this backend."""
        name = str(info.get("device", ""))
        if not re.search(self.adapter_name, name):
            return False
        if self.api != "any" and str(info.get("backend_type", "")) != self.api:
            return False
        is_cpu = str(info.get("adapter_type", "")) == "CPU" or "llvmpipe" in name.lower()
        return is_cpu if self.device_type == "CPU" else not is_cpu


@dataclass(frozen=True)
class Kernel:
    name: str
    file: str
    when: str
    dispatch: tuple[str, ...]
    overrides: Mapping[str, str | int | float]
    requires_features: tuple[str, ...]
    requires_limits: Mapping[str, int]
    tolerance: Tolerance | None
    backends: tuple[str, ...] | None
    text: str | None = None  # the WGSL to compile when it is not the file as-is (a mutant, an expanded template)
    origin: str = ""  # where the text came from, for the report (file, "template X variant Y", "mutant of X")
    template: str = ""  # kernel sets: the template (.wgsl + .yaml) this variant is generated from
    notes: tuple[str, ...] = ()  # what a kernel author should know about this text (e.g. a stale generated header)

    def path(self, root: Path) -> Path:
        p = Path(self.file)
        return p if p.is_absolute() else root / p

    def source(self, root: Path) -> str:
        return self.text if self.text is not None else self.path(root).read_text()


def make_kernel(name: str, file: str, dispatch: str | tuple[str, ...], *, when: str = "1",
                overrides: Mapping[str, str | int | float] | None = None, requires_features: tuple[str, ...] = (),
                requires_limits: Mapping[str, int] | None = None, tolerance: Tolerance | None = None,
                backends: tuple[str, ...] | None = None, text: str | None = None, origin: str = "",
                template: str = "") -> Kernel:
    """The one constructor for a Kernel: from matrix.toml, from `check --kernel`, a mutant or a kernel set."""
    return Kernel(name=name, file=file, when=when,
                  dispatch=split_dispatch(dispatch) if isinstance(dispatch, str) else tuple(dispatch),
                  overrides=MappingProxyType(dict(overrides or {})), requires_features=tuple(requires_features),
                  requires_limits=MappingProxyType(dict(requires_limits or {})), tolerance=tolerance,
                  backends=backends, text=text, origin=origin or file, template=template)


@dataclass(frozen=True)
class KernelSet:
    """Kernels that live in another project's tree (ExecuTorch's), declared here, read from a checkout."""

    name: str
    folder: str  # kernel files, relative to the checkout
    generator: str  # the project's template expander, relative to the checkout
    route: tuple[str, ...]  # the runtime's order: the first variant whose preconditions hold is what runs
    kernels: tuple[Kernel, ...]  # `file` relative to `folder`


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
        suggestion = _suggest(name, [c.name for c in self.configs])
        raise MatrixError(self.path, f"config '{name}'", "name", "no such config",
                          f"{suggestion}see `python -m q4gsw list` for the names")

    def backend(self, name: str) -> Backend:
        if name not in self.backends:
            suggestion = _suggest(name, list(self.backends))
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
# Expressions
# ------------------------------------------------------------------------------------------------


def evaluate(expression: str, names: Mapping[str, Any]) -> Any:
    evaluator = EvalWithCompoundTypes(names=dict(names), functions=EXPRESSION_FUNCTIONS)
    return evaluator.eval(expression)


def expression_names(limits: Mapping[str, int] | None = None) -> dict[str, int]:
    """Placeholder values for validating expressions without an adapter."""
    names = {n: 64 for n in SHAPE_NAMES}
    for short, key in LIMIT_NAMES.items():
        names[short] = int(limits[key]) if limits and key in limits else 65535
    return names


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


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------

_TOP_KEYS = ("schema_version", "defaults", "backend", "kernel", "kernel_set", "config")
_DEFAULT_KEYS = ("group_size", "weight_seed", "inputs", "suite", "timeout_s", "weights")
_CONFIG_KEYS = ("name", "M", "K", "N", "group_size", "tier", "suite", "inputs", "weights", "weight_seed",
                "timeout_s", "tolerance", "upstream_tolerance", "f16_accumulate_gemm")
_KERNEL_SET_KEYS = ("folder", "generator", "route", "kernel")
_TOLERANCE_KEYS = ("atol", "rtol", "justification")
_BACKEND_KEYS = ("description", "api", "adapter_name", "device_type", "provision", "tolerance", "webgpu",
                 "dawn_toggles")
WEBGPU_IMPLEMENTATIONS = ("wgpu-native", "dawn")
_KERNEL_KEYS = ("file", "when", "dispatch", "overrides", "requires_features", "requires_limits", "tolerance",
                "backends", "template")


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, key: str, problem: str, fix: str) -> MatrixError:
        return MatrixError(self.path, where, key, problem, fix)

    def known_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str, prefix: str = "") -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(where, prefix + key, "unknown key",
                                f"{_suggest(key, list(allowed))}allowed keys are {', '.join(allowed)}")

    def table(self, value: Any, where: str, key: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, key, f"expected a table, got {type(value).__name__}",
                            f"write it as [{key}] or {key} = {{ ... }}")
        return value

    def integer(self, value: Any, where: str, key: str, positive: bool = True) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, key, f"expected an integer, got {value!r} ({type(value).__name__})",
                            "write a whole number without quotes")
        if positive and value <= 0:
            raise self.fail(where, key, f"must be positive, got {value}", "use a value >= 1")
        if not positive and value < 0:
            raise self.fail(where, key, f"must not be negative, got {value}", "use a value >= 0")
        return value

    def number(self, value: Any, where: str, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, key, f"expected a number, got {value!r} ({type(value).__name__})",
                            "write a number without quotes, e.g. 1e-5")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise self.fail(where, key, f"must be finite, got {value}", "use a finite non-negative number")
        if number < 0:
            raise self.fail(where, key, f"must not be negative, got {value}", "use a non-negative number")
        return number

    def string(self, value: Any, where: str, key: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(where, key, f"expected a string, got {value!r} ({type(value).__name__})",
                            "put the value in double quotes")
        if choices is not None and value not in choices:
            raise self.fail(where, key, f"unknown value '{value}'",
                            f"{_suggest(value, list(choices))}choose one of {', '.join(choices)}")
        return value

    def tolerance(self, value: Any, where: str, source: str) -> Tolerance:
        tol = self.table(value, where, "tolerance")
        self.known_keys(tol, _TOLERANCE_KEYS, where, "tolerance.")
        for key in _TOLERANCE_KEYS:
            if key not in tol:
                fix = ("add a sentence saying why this bound is right for this shape (see docs/error-model.md)"
                       if key == "justification" else f"add tolerance.{key} = <non-negative number>")
                raise self.fail(where, f"tolerance.{key}", "missing", fix)
        justification = self.string(tol["justification"], where, "tolerance.justification")
        if not justification.strip():
            raise self.fail(where, "tolerance.justification", "is empty",
                            "write why this bound is right for this shape (see docs/error-model.md)")
        return Tolerance(atol=self.number(tol["atol"], where, "tolerance.atol"),
                         rtol=self.number(tol["rtol"], where, "tolerance.rtol"),
                         justification=justification.strip(), source=source)

    def name(self, value: str, where: str, key: str) -> str:
        """A name that becomes a file name, a nox session name and a CLI argument."""
        if not SAFE_NAME.fullmatch(value) or ".." in value:
            raise self.fail(where, key, f"{value!r} is not usable as a file, session and argument name",
                            "start with a letter or digit and use only letters, digits, '_', '-' and '.' "
                            "(no '..'), at most 64 characters")
        return value

    def expression(self, text: Any, where: str, key: str, names: Mapping[str, Any]) -> str:
        text = self.string(text, where, key)
        try:
            evaluate(text, names)
        except (InvalidExpression, Exception) as exc:  # any failure (IndexError, OverflowError, ...) is the user's
            raise self.fail(where, key, f"bad expression {text!r}: {exc}",
                            f"use arithmetic over {', '.join([*SHAPE_NAMES, *LIMIT_NAMES])}, "
                            "override names and ceil/min/max") from exc
        return text


def load_matrix(path: Path | str, known_inputs: tuple[str, ...] | None = None,
                known_weights: tuple[str, ...] | None = None) -> Matrix:
    from q4gsw import inputs as input_registry  # late: keeps matrix importable without numpy users

    path = Path(path)
    known_inputs = known_inputs or tuple(input_registry.INPUTS)
    known_weights = known_weights or tuple(input_registry.WEIGHTS)
    check = _Checker(path)
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
    check.known_keys(defaults, _DEFAULT_KEYS, "[defaults]")

    backends = _load_backends(check, data)
    table = check.table(data.get("kernel", {}), "top level", "kernel")
    if not table:
        raise check.fail("top level", "kernel", "no kernels defined", "add at least one [kernel.NAME] table")
    kernels = _load_kernels(check, table, tuple(backends), "kernel", check.path.parent)
    kernel_sets = _load_kernel_sets(check, data, tuple(backends))
    configs = _load_configs(check, data, defaults, known_inputs, known_weights)

    names = {c.name for c in configs}
    for backend in backends.values():
        for config_name in backend.tolerance_overrides:
            if config_name not in names:
                raise check.fail(f"[backend.{backend.name}]", f"tolerance.{config_name}", "names no config",
                                 f"{_suggest(config_name, sorted(names))}use a config name from [[config]]")
    return Matrix(path=path.resolve(), configs=configs, backends=MappingProxyType(backends), kernels=kernels,
                  kernel_sets=MappingProxyType(kernel_sets))


def _load_kernel_sets(check: _Checker, data: Mapping[str, Any], backend_names: tuple[str, ...]) -> dict[str, KernelSet]:
    sets = {}
    for name, raw in check.table(data.get("kernel_set", {}), "top level", "kernel_set").items():
        where = f"[kernel_set.{name}]"
        check.name(name, where, "kernel set name")
        raw = check.table(raw, where, f"kernel_set.{name}")
        check.known_keys(raw, _KERNEL_SET_KEYS, where)
        for key in ("folder", "generator", "route", "kernel"):
            if key not in raw:
                raise check.fail(where, key, "missing", f"add {key} = ... (see docs/executorch.md)")
        kernels = _load_kernels(check, check.table(raw["kernel"], where, "kernel"), backend_names,
                                f"kernel_set.{name}.kernel", None)
        route = raw["route"]
        if not isinstance(route, list) or not all(isinstance(r, str) for r in route):
            raise check.fail(where, "route", "expected a list of kernel names", 'write route = ["a", "b"]')
        declared = [k.name for k in kernels]
        for entry in route:
            if entry not in declared:
                raise check.fail(where, "route", f"'{entry}' is not a kernel of this set",
                                 f"{_suggest(entry, declared)}declare [kernel_set.{name}.kernel.{entry}]")
        sets[name] = KernelSet(name=name, folder=check.string(raw["folder"], where, "folder"),
                               generator=check.string(raw["generator"], where, "generator"), route=tuple(route),
                               kernels=kernels)
    return sets


def _load_backends(check: _Checker, data: Mapping[str, Any]) -> dict[str, Backend]:
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
        adapter_name = check.string(raw["adapter_name"], where, "adapter_name")
        try:
            re.compile(adapter_name)
        except re.error as exc:
            raise check.fail(where, "adapter_name", f"not a valid regular expression: {exc}",
                             "escape special characters or use a plain substring") from exc
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
            dawn_toggles=_toggles(check, raw, where))
    return backends


def _load_kernels(check: _Checker, table: Mapping[str, Any], backend_names: tuple[str, ...], prefix: str,
                  base: Path | None) -> tuple[Kernel, ...]:
    """Kernel tables; `base` is where `file` must exist (None: in a tree given at run time)."""
    kernels = []
    for name, raw in table.items():
        where = f"[{prefix}.{name}]"
        check.name(name, where, "kernel name")
        raw = check.table(raw, where, f"kernel.{name}")
        check.known_keys(raw, _KERNEL_KEYS, where)
        for key in ("file", "when", "dispatch"):
            if key not in raw:
                raise check.fail(where, key, "missing", f"add {key} = \"...\" (see docs/kernels.md)")
        kernel_file = check.string(raw["file"], where, "file")
        if base is not None and not (base / kernel_file).is_file() and not Path(kernel_file).is_file():
            raise check.fail(where, "file", f"'{kernel_file}' does not exist",
                             "give a .wgsl path relative to matrix.toml")
        overrides_raw = check.table(raw.get("overrides", {}), where, "overrides")
        names = expression_names()
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
                                 f"{_suggest(key, list(LIMIT_NAMES))}choose from {', '.join(LIMIT_NAMES)}")
            check.integer(value, where, f"requires_limits.{key}")
        features = raw.get("requires_features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise check.fail(where, "requires_features", "expected a list of feature names",
                             'write e.g. requires_features = ["shader-f16"]')
        kernel_backends = raw.get("backends")
        if kernel_backends is not None:
            if not isinstance(kernel_backends, list):
                raise check.fail(where, "backends", "expected a list of backend names", 'write e.g. ["native"]')
            for b in kernel_backends:
                check.string(b, where, "backends", backend_names)
        tolerance = check.tolerance(raw["tolerance"], where, f"kernel:{name}") if "tolerance" in raw else None
        kernels.append(make_kernel(name, kernel_file, dispatch, when=when, overrides=overrides,
                                   requires_features=tuple(features), requires_limits=dict(limits_raw),
                                   tolerance=tolerance,
                                   backends=tuple(kernel_backends) if kernel_backends is not None else None,
                                   template=check.string(raw.get("template", ""), where, "template")))
    return tuple(kernels)


def _load_configs(check: _Checker, data: Mapping[str, Any], defaults: Mapping[str, Any],
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


def _load_config(check: _Checker, raw: Mapping[str, Any], name: str, where: str, defaults: Mapping[str, Any],
                 known_inputs: tuple[str, ...], known_weights: tuple[str, ...]) -> Config:
    check.known_keys(raw, _CONFIG_KEYS, where)
    merged = {**defaults, **raw}
    for key in ("M", "K", "N", "group_size", "tier", "tolerance"):
        if key not in merged:
            raise check.fail(where, key, "missing", f"add {key} = ... to this config or to [defaults]")
    M = check.integer(merged["M"], where, "M")
    K = check.integer(merged["K"], where, "K")
    N = check.integer(merged["N"], where, "N")
    group_size = check.integer(merged["group_size"], where, "group_size")
    if K % group_size:
        raise check.fail(where, "K", f"K={K} is not a multiple of group_size={group_size}",
                         "int4 per-group quantisation needs whole groups: change K or group_size")
    if K % 8:
        raise check.fail(where, "K", f"K={K} is not a multiple of 8",
                         "packed weights are read as u32 words of 8 nibbles: use a multiple of 8")
    if N % 8:
        raise check.fail(where, "N", f"N={N} is not a multiple of 8",
                         "ExecuTorch's WebGPU q4gsw requires N % 8 == 0: use a multiple of 8")
    _check_binding_sizes(check, where, M, K, N)
    config_inputs = merged.get("inputs", ["ramp"])
    if isinstance(config_inputs, str):
        config_inputs = [config_inputs]
    if not isinstance(config_inputs, list) or not config_inputs:
        raise check.fail(where, "inputs", "expected a non-empty list of input names", 'write inputs = ["ramp"]')
    for input_name in config_inputs:
        check.string(input_name, where, "inputs", known_inputs)
    weights = check.string(merged.get("weights", "linear_init"), where, "weights", known_weights)
    timeout = check.number(merged.get("timeout_s", 900), where, "timeout_s")
    if timeout == 0:
        raise check.fail(where, "timeout_s", "must be positive", "use a number of seconds > 0")
    return Config(
        name=name, M=M, K=K, N=N, group_size=group_size,
        tier=check.string(merged["tier"], where, "tier", TIERS),
        suite=check.name(check.string(merged.get("suite", "llama"), where, "suite"), where, "suite"),
        inputs=tuple(config_inputs), weights=weights,
        weight_seed=check.integer(merged.get("weight_seed", 0), where, "weight_seed", positive=False),
        timeout_s=timeout, tolerance=check.tolerance(merged["tolerance"], where, "config"),
        upstream_tolerance=_upstream_tolerance(check, raw.get("upstream_tolerance"), where),
        f16_accumulate_gemm=_boolean(check, raw.get("f16_accumulate_gemm", False), where, "f16_accumulate_gemm"))


def _upstream_tolerance(check: _Checker, value: Any, where: str) -> Tolerance | None:
    """ExecuTorch's own bound for this row: atol and rtol only (its justification lives upstream)."""
    if value is None:
        return None
    table = check.table(value, where, "upstream_tolerance")
    check.known_keys(table, ("atol", "rtol"), where, "upstream_tolerance.")
    return Tolerance(atol=check.number(table.get("atol"), where, "upstream_tolerance.atol"),
                     rtol=check.number(table.get("rtol"), where, "upstream_tolerance.rtol"),
                     justification="ExecuTorch's test_webgpu_native.cpp (abs OR rel)", source="upstream")


def _boolean(check: _Checker, value: Any, where: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise check.fail(where, key, f"expected true or false, got {value!r}", f"write {key} = true")
    return value


def _toggles(check: _Checker, raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    toggles = raw.get("dawn_toggles", [])
    if not isinstance(toggles, list) or not all(isinstance(t, str) and t for t in toggles):
        raise check.fail(where, "dawn_toggles", "expected a list of Dawn toggle names",
                         'write e.g. dawn_toggles = ["vulkan_enable_f16_on_nvidia"]')
    if toggles and raw.get("webgpu") != "dawn":
        raise check.fail(where, "dawn_toggles", "only a Dawn backend has toggles", 'add webgpu = "dawn"')
    return tuple(toggles)


def _check_binding_sizes(check: _Checker, where: str, M: int, K: int, N: int) -> None:
    for key, size in (("M", 4 * M * K), ("M", 4 * M * N), ("N", N * K // 2)):
        if size > MAX_BINDING_BYTES:
            raise check.fail(where, key, f"{M}x{K}x{N} needs a {size / 2**30:.1f} GiB buffer binding",
                             f"no adapter q4gsw supports binds more than {MAX_BINDING_BYTES / 2**30:.0f} GiB: "
                             "use a smaller shape")



MAX_SEED = 2**64 - 1  # torch.manual_seed (torch_linear weights) takes an unsigned 64-bit seed


def check_runnable(matrix: Matrix) -> None:
    """What `validate` checks beyond the loader: every config can run somewhere. Raise MatrixError for a config
    no kernel of the matrix (or of a declared kernel set) can run on any of its backends (`when` false, or a
    dispatch outside 1..2^30 even on the most generous adapter, or an expression that cannot be evaluated for
    its shape), or whose weights cannot be generated."""
    from q4gsw.webgpu.dispatch import UNKNOWN_LIMIT, KernelUnsupported, kernel_applies, resolve_kernel

    generous = _GenerousAdapter({key: UNKNOWN_LIMIT for key in LIMIT_NAMES.values()})
    kernels = [*matrix.kernels, *(k for s in matrix.kernel_sets.values() for k in s.kernels)]
    for config in matrix.configs:
        where = f"config '{config.name}'"
        if config.weight_seed > MAX_SEED:
            raise MatrixError(matrix.path, where, "weight_seed", f"{config.weight_seed} does not fit 64 bits",
                              f"use a seed from 0 to {MAX_SEED}")
        reasons = []
        for kernel in kernels:
            backends = [b for b in matrix.backends.values() if kernel.backends is None or b.name in kernel.backends]
            try:
                if not backends or not kernel_applies(kernel, config, backends[0]):
                    reasons.append(f"{kernel.name}: `when = {kernel.when}` does not hold" if backends else
                                   f"{kernel.name}: no backend of the matrix runs it")
                    continue
                resolve_kernel(kernel, config.shape_names(), generous)  # type: ignore[arg-type]
            except KernelUnsupported as exc:
                reasons.append(str(exc))
                continue
            break
        else:
            raise MatrixError(matrix.path, where, "M/K/N/group_size",
                              f"no kernel can run {config.M}x{config.K}x{config.N} gs={config.group_size} on any "
                              f"backend ({'; '.join(reasons)})",
                              "change the shape, or add a kernel whose `when` and dispatch hold for it")


@dataclass(frozen=True)
class _GenerousAdapter:
    """The most capable adapter imaginable: what no adapter can run, nothing will."""

    limits: Mapping[str, int]
    name: str = "any adapter"
    webgpu: str = "any WebGPU implementation"

    @property
    def features(self) -> _Everything:
        return _Everything()


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True
