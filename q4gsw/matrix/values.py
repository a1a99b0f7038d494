"""The value types every stage shares: what matrix.toml declares and what an adapter offers.

Plain frozen dataclasses with no behaviour beyond small derived values; nothing here imports wgpu,
numpy-heavy code or an op. matrix.py builds them from matrix.toml; expressions.py evaluates kernels
against them; results carry them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_OP = "linear_q4gsw"


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    justification: str = ""
    source: str = "config"  # where it came from: config, kernel:<name>, backend:<name>, upstream

    def bound(self, golden_abs: Any) -> Any:
        return self.atol + self.rtol * golden_abs


@dataclass(frozen=True)
class Dim:
    """One dimension an op declares: the matrix.toml key a config gives it by, what it means, its least value."""

    name: str
    meaning: str
    minimum: int = 1


@dataclass(frozen=True)
class Config:
    name: str
    dims: Mapping[str, int] = field(hash=False)  # the op's dimensions by the op's names (Op.dims), read-only
    tier: str
    suite: str
    inputs: tuple[str, ...]
    weights: str
    weight_seed: int
    timeout_s: float
    tolerance: Tolerance
    upstream_tolerance: Tolerance | None = None  # ExecuTorch's own test bound (abs OR rel), shown beside ours
    f16_accumulate_gemm: bool = False  # ExecuTorch runtime option `enable_f16_accumulate_gemm` for this config
    op: str = DEFAULT_OP  # the operator under test (q4gsw/ops/<op>/)
    drift_factor: float | None = None  # how much its error may grow against a baseline run (None: --drift-factor)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", MappingProxyType(dict(self.dims)))  # a caller's dict stays the caller's


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    api: str
    adapter_name: str  # regular expression the adapter's device name must match
    device_type: str  # CPU or GPU
    provision: str
    tolerance_overrides: Mapping[str, Tolerance] = field(default_factory=lambda: MappingProxyType({}))
    webgpu: str = "wgpu-native"  # the WebGPU implementation: wgpu-native (naga) or dawn (Tint)
    dawn_toggles: tuple[str, ...] = ()  # Dawn toggles to enable (e.g. vulkan_enable_f16_on_nvidia)

    def matches(self, adapter: AdapterInfo) -> bool:
        """True if an adapter is one of this backend's."""
        if not re.search(self.adapter_name, adapter.name):
            return False
        if self.api != "any" and adapter.api != self.api:
            return False
        return adapter.is_cpu if self.device_type == "CPU" else not adapter.is_cpu


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
    device_type: str = ""  # CPU or GPU: the adapters this kernel is written for ("" = any)
    adapter_name: str = ""  # regular expression the adapter's name must match ("" = any)
    op: str = DEFAULT_OP
    text: str | None = None  # the WGSL to compile when it is not the file as-is (a mutant, an expanded template)
    origin: str = ""  # where the text came from, for the report (file, "template X variant Y", "mutant of X")
    template: str = ""  # kernel sets: the template (.wgsl + .yaml) this variant is generated from
    notes: tuple[str, ...] = ()  # what a kernel author should know about this text (e.g. a stale generated header)
    before: Kernel | None = None  # a kernel dispatched first whose outputs this one reads, as the runtime chains them
    # (it may have a `before` of its own: a chain of any length, first dispatched first; chain())
    stage: str = ""  # which of the op's dispatches this kernel is (Op.stages; "": the op's bindings/before_bindings)
    variant: str = ""  # kernel sets: the template variant it is (its generated header's name); "": the kernel's name

    @property
    def variant_name(self) -> str:
        return self.variant or self.name

    def chain(self) -> tuple[Kernel, ...]:
        """The kernels dispatched before this one, in dispatch order (empty without a `before`)."""
        chain: list[Kernel] = []
        first = self.before
        while first is not None:
            chain.insert(0, first)
            first = first.before
        return tuple(chain)

    def path(self, root: Path) -> Path:
        p = Path(self.file)
        return p if p.is_absolute() else root / p

    def source(self, root: Path) -> str:
        return self.text if self.text is not None else self.path(root).read_text()


@dataclass(frozen=True)
class KernelSet:
    """Kernels that live in another project's tree (ExecuTorch's), declared here, read from a checkout."""

    name: str
    folder: str  # kernel files, relative to the checkout
    generator: str  # the project's template expander, relative to the checkout
    route: tuple[str, ...]  # the runtime's order: the first variant whose preconditions hold is what runs
    kernels: tuple[Kernel, ...]  # `file` relative to `folder`
    op: str = DEFAULT_OP


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter as a WebGPU implementation reports it; features in the matrix's vocabulary."""

    name: str = ""
    vendor: str = ""
    device_type: str = ""  # as the implementation says: CPU, DiscreteGPU, IntegratedGPU, ...
    api: str = ""
    driver: str = ""
    webgpu: str = ""  # the WebGPU implementation that found it: wgpu-native or dawn
    webgpu_package: str = ""  # its package, exactly: "wgpudawn==0.32.0.4", "wgpu==0.32.0" (adapter.package_of)
    webgpu_build: str = ""  # the native library that package loaded: "Dawn v20261009.190412", "wgpu-native 29.0.1.1"
    driver_package: str = ""  # the provisioned Vulkan driver's build ("chromium-common 156.0…"), "" for the system's
    features: tuple[str, ...] = ()
    native_features: Mapping[str, str] = field(default_factory=dict)  # matrix name -> implementation name
    limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_cpu(self) -> bool:
        return self.device_type == "CPU" or "llvmpipe" in self.name.lower()

    def driver_text(self) -> str:
        """The driver as the adapter names it and, for a provisioned one, the build it came from."""
        parts = [p for p in (self.driver, self.driver_package) if p]
        return ", ".join(parts) or "n/a"

    def webgpu_text(self) -> str:
        """The implementation with its exact package and native build, e.g. `dawn (wgpudawn==0.32.0.4, Dawn v…)`."""
        parts = [p for p in (self.webgpu_package, self.webgpu_build) if p]
        return self.webgpu + (f" ({', '.join(parts)})" if parts else "")

    def describe(self) -> str:
        return f"{self.name} ({self.device_type}, {self.api}, driver {self.driver_text()}) via {self.webgpu_text()}"


@dataclass(frozen=True)
class Errors:
    """What compare() measured, plus the guard-region check and the |err| histogram for the plots."""

    max_abs: float
    max_rel: float
    worst_index: tuple[int, int]  # (m, n) of the largest |y - g| / bound
    mismatches: int
    elements: int
    nmse: float
    headroom: float  # max |y - g| / (atol + rtol * |g|); <= 1 passes
    nonfinite: int = 0
    first_nonfinite: tuple[int, int] | None = None
    guard_violations: int = 0
    histogram: dict[str, Any] = field(default_factory=dict)
