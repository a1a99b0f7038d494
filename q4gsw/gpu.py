"""Run a q4gsw WGSL kernel through wgpu on the adapter a backend names — never on another one.

Provisioning (finding or installing the Vulkan ICD) happens in the parent process and is passed
to child processes as environment variables, because the Vulkan loader reads them only once, when
wgpu first loads it.
"""

from __future__ import annotations

import ctypes.util
import glob
import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from q4gsw.matrix import LIMIT_NAMES, Backend, Config, Kernel, evaluate
from q4gsw.unpack import PackedLinear, as_u32_words

SWIFTSHADER_ICD_ENV = "Q4GSW_SWIFTSHADER_ICD"
LAVAPIPE_ICD_ENV = "Q4GSW_LAVAPIPE_ICD"
GUARD_WORDS = 256  # per side; 1 KiB keeps the output binding offset 256-byte aligned
GUARD_PATTERN = 0x7FC0_0BAD  # a quiet-NaN bit pattern: unwritten outputs read back as NaN
WGPU_API_NAMES = {"Vulkan": "Vulkan", "Metal": "Metal", "D3D12": "DX12"}
OPTIONAL_SHADER_FEATURES = ("shader-f16", "subgroup")


class BackendUnavailable(RuntimeError):
    """The requested backend's adapter cannot be provisioned or found; the message says how to fix it."""


class KernelUnsupported(RuntimeError):
    """The adapter lacks a feature or limit the kernel declares it needs."""


# ------------------------------------------------------------------------------------------------
# Provisioning (parent process)
# ------------------------------------------------------------------------------------------------


def _cache_root() -> Path:
    return Path(os.environ.get("Q4GSW_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "q4gsw")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(packages: list[str], why: str) -> None:
    command = ["apt-get", "install", "-y", "-q", *packages]
    if not _is_root() or shutil.which("apt-get") is None:
        raise BackendUnavailable(f"{why}. Install it with: sudo apt-get update && sudo {' '.join(command)}")
    print(f"[q4gsw] {why}: running {' '.join(command)}", flush=True)
    update = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if update.returncode or result.returncode:
        raise BackendUnavailable(f"{why}; `{' '.join(command)}` failed:\n{result.stderr[-2000:]}")


def ensure_vulkan_loader() -> None:
    if ctypes.util.find_library("vulkan") is None:
        _apt_install(["libvulkan1"], "the Vulkan loader (libvulkan.so.1) is not installed")


def provision_swiftshader() -> dict[str, str]:
    """Locate SwiftShader's ICD or unpack it from Debian's chromium-common without installing chromium."""
    ensure_vulkan_loader()
    given = os.environ.get(SWIFTSHADER_ICD_ENV)
    if given:
        if not Path(given).is_file():
            raise BackendUnavailable(f"{SWIFTSHADER_ICD_ENV}={given} does not exist: point it at a "
                                     "vk_swiftshader_icd.json whose library_path is an absolute path")
        return {"VK_ICD_FILENAMES": given, "VK_DRIVER_FILES": given}
    target = _cache_root() / "swiftshader"
    icd = target / "vk_swiftshader_icd.json"
    if icd.is_file() and Path(json.loads(icd.read_text())["ICD"]["library_path"]).is_file():
        return {"VK_ICD_FILENAMES": str(icd), "VK_DRIVER_FILES": str(icd)}
    fix = (f"run as root on Debian/Ubuntu with apt, or set {SWIFTSHADER_ICD_ENV} to an existing "
           "vk_swiftshader_icd.json (e.g. from a Chromium build)")
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise BackendUnavailable(f"SwiftShader not found and apt-get/dpkg are unavailable: {fix}")
    print("[q4gsw] provisioning SwiftShader from Debian's chromium-common (download + unpack, no install)",
          flush=True)
    download = target / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    result = subprocess.run(["apt-get", "download", "chromium-common"], cwd=download, capture_output=True, text=True)
    if result.returncode and _is_root():
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        result = subprocess.run(["apt-get", "download", "chromium-common"], cwd=download, capture_output=True,
                                text=True)
    debs = glob.glob(str(download / "chromium-common_*.deb"))
    if result.returncode or not debs:
        raise BackendUnavailable(f"`apt-get download chromium-common` failed ({result.stderr.strip()[-500:]}): "
                                 f"run `sudo apt-get update` first, or {fix}")
    unpacked = target / "root"
    shutil.rmtree(unpacked, ignore_errors=True)
    subprocess.run(["dpkg", "-x", debs[0], str(unpacked)], check=True)
    libraries = glob.glob(str(unpacked / "usr/lib/chromium/libvk_swiftshader.so"))
    if not libraries:
        raise BackendUnavailable(f"chromium-common ({debs[0]}) has no libvk_swiftshader.so: {fix}")
    icd_tmp = icd.with_suffix(".tmp")
    icd_tmp.write_text(json.dumps({"file_format_version": "1.0.0",
                                   "ICD": {"library_path": libraries[0], "api_version": "1.0.5"}}))
    os.replace(icd_tmp, icd)
    shutil.rmtree(download, ignore_errors=True)
    return {"VK_ICD_FILENAMES": str(icd), "VK_DRIVER_FILES": str(icd)}


def provision_lavapipe() -> dict[str, str]:
    ensure_vulkan_loader()
    given = os.environ.get(LAVAPIPE_ICD_ENV)
    if given:
        return {"VK_ICD_FILENAMES": given, "VK_DRIVER_FILES": given}
    candidates = sorted(glob.glob("/usr/share/vulkan/icd.d/lvp_icd*.json"))
    if not candidates:
        _apt_install(["mesa-vulkan-drivers"], "Mesa's lavapipe Vulkan driver is not installed")
        candidates = sorted(glob.glob("/usr/share/vulkan/icd.d/lvp_icd*.json"))
    if not candidates:
        raise BackendUnavailable(f"no lvp_icd*.json under /usr/share/vulkan/icd.d after installing "
                                 f"mesa-vulkan-drivers: set {LAVAPIPE_ICD_ENV} to lavapipe's ICD json")
    return {"VK_ICD_FILENAMES": candidates[0], "VK_DRIVER_FILES": candidates[0]}


def provision(backend: Backend) -> dict[str, str]:
    """Environment variables a child process needs to see exactly this backend's driver."""
    if backend.provision == "swiftshader":
        env = provision_swiftshader()
    elif backend.provision == "lavapipe":
        env = provision_lavapipe()
    else:
        env = {}
    env["Q4GSW_WGPU_BACKENDS"] = ",".join(
        [WGPU_API_NAMES[backend.api]] if backend.api != "any" else list(WGPU_API_NAMES.values()))
    return env


# ------------------------------------------------------------------------------------------------
# Adapter (child process)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    vendor: str
    device_type: str
    api: str
    driver: str
    features: tuple[str, ...]
    limits: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vendor": self.vendor, "device_type": self.device_type, "api": self.api,
                "driver": self.driver, "features": list(self.features),
                "limits": {k: self.limits[k] for k in LIMIT_NAMES.values() if k in self.limits}}


def _info_of(adapter: Any) -> AdapterInfo:
    info = adapter.info
    return AdapterInfo(name=str(info.get("device", "")), vendor=str(info.get("vendor", "")),
                       device_type=str(info.get("adapter_type", "")), api=str(info.get("backend_type", "")),
                       driver=str(info.get("description", "")), features=tuple(sorted(adapter.features)),
                       limits=dict(adapter.limits))


def select_adapter(backend: Backend) -> tuple[Any, AdapterInfo]:
    import wgpu
    from wgpu.backends.wgpu_native import extras

    wanted = [b for b in os.environ.get("Q4GSW_WGPU_BACKENDS", "").split(",") if b]
    if wanted:
        extras.set_instance_extras(backends=wanted)
    adapters = wgpu.gpu.enumerate_adapters_sync()
    seen = [_info_of(a) for a in adapters]
    matching = [(a, i) for a, i in zip(adapters, seen, strict=True) if backend.matches(a.info)]
    if not matching:
        listed = "; ".join(f"{i.name} ({i.device_type}, {i.api})" for i in seen) or "none"
        raise BackendUnavailable(
            f"backend '{backend.name}' needs an adapter matching /{backend.adapter_name}/ "
            f"({backend.device_type}, {backend.api}); adapters seen: {listed}. "
            "No fallback to another adapter is made.")
    matching.sort(key=lambda pair: pair[1].device_type != "DiscreteGPU")
    return matching[0]


# ------------------------------------------------------------------------------------------------
# Execution
# ------------------------------------------------------------------------------------------------


def expression_environment(config_shape: Mapping[str, int], limits: Mapping[str, int]) -> dict[str, int]:
    env = dict(config_shape)
    for short, key in LIMIT_NAMES.items():
        if key in limits:
            env[short] = int(limits[key])
    return env


def resolve_kernel(kernel: Kernel, shape: Mapping[str, int],
                   info: AdapterInfo) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Check the kernel's needs against the adapter; return (override constants, workgroup counts)."""
    missing = [f for f in kernel.requires_features if f not in info.features]
    if missing:
        raise KernelUnsupported(f"kernel '{kernel.name}' needs adapter features {missing}, which {info.name} lacks")
    for short, needed in kernel.requires_limits.items():
        have = int(info.limits.get(LIMIT_NAMES[short], 0))
        if have < needed:
            raise KernelUnsupported(f"kernel '{kernel.name}' needs {short} >= {needed}; {info.name} has {have}")
    env = expression_environment(shape, info.limits)
    constants = {}
    for name, value in kernel.overrides.items():
        constants[name] = evaluate(value, env) if isinstance(value, str) else value
        env[name] = constants[name]
    counts = tuple(int(evaluate(e, env)) for e in kernel.dispatch)
    limit = int(info.limits.get("max-compute-workgroups-per-dimension", 65535))
    if any(c < 1 or c > limit for c in counts):
        raise KernelUnsupported(f"kernel '{kernel.name}' dispatch {counts} is outside 1..{limit} "
                                f"(max workgroups per dimension) for M={shape['M']}, N={shape['N']}")
    return constants, counts


@dataclass
class GpuRun:
    output: np.ndarray  # float32 [M, N]
    guard_violations: list[int]  # byte offsets (relative to the output start) of changed guard words
    wall_s: float  # first dispatch, including pipeline creation
    gpu_s: float | None  # from timestamp queries, when supported
    workgroups: tuple[int, ...]
    constants: dict[str, Any]


class Session:
    """A device on one adapter, with the binding layout shared by every q4gsw kernel."""

    def __init__(self, adapter: Any, info: AdapterInfo, want_features: tuple[str, ...] = ()) -> None:
        import wgpu

        self.wgpu = wgpu
        self.info = info
        features = [f for f in ("timestamp-query", *want_features) if f in info.features]
        limit_keys = [*LIMIT_NAMES.values(), "max-buffer-size", "max-storage-buffers-per-shader-stage"]
        limits = {k: info.limits[k] for k in limit_keys if k in info.limits}
        self.device = adapter.request_device_sync(required_features=features, required_limits=limits)
        self.timestamps = "timestamp-query" in features
        S = wgpu.BufferBindingType
        entries = [{"binding": 0, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": S.storage}}]
        entries += [{"binding": b, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": S.read_only_storage}}
                    for b in (1, 2, 3, 4)]
        entries.append({"binding": 5, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": S.uniform}})
        self.bind_group_layout = self.device.create_bind_group_layout(entries=entries)
        self.pipeline_layout = self.device.create_pipeline_layout(bind_group_layouts=[self.bind_group_layout])

    def pipeline(self, source: str, constants: Mapping[str, Any], label: str) -> Any:
        module = self.device.create_shader_module(code=source, label=label)
        return self.device.create_compute_pipeline(
            layout=self.pipeline_layout, label=label,
            compute={"module": module, "entry_point": "main", "constants": dict(constants)})

    def run(self, source: str, kernel_name: str, constants: Mapping[str, Any], workgroups: tuple[int, ...],
            x: np.ndarray, packed: PackedLinear, repeats: int = 1) -> GpuRun:
        wgpu = self.wgpu
        device = self.device
        M, K = x.shape
        N = packed.N
        usage = wgpu.BufferUsage
        started = time.perf_counter()
        pipeline = self.pipeline(source, constants, kernel_name)
        out_words = M * N
        guarded = np.full(out_words + 2 * GUARD_WORDS, GUARD_PATTERN, dtype=np.uint32)
        out_buffer = device.create_buffer_with_data(data=guarded, usage=usage.STORAGE | usage.COPY_SRC)
        x_buffer = device.create_buffer_with_data(data=np.ascontiguousarray(x, np.float32), usage=usage.STORAGE)
        w_buffer = device.create_buffer_with_data(data=as_u32_words(packed.weight_packed), usage=usage.STORAGE)
        s_buffer = device.create_buffer_with_data(data=np.ascontiguousarray(packed.scales, np.float32),
                                                  usage=usage.STORAGE)
        bias_buffer = device.create_buffer_with_data(data=np.zeros(4, np.float32), usage=usage.STORAGE)
        params = np.array([M, N, K, K // 2, packed.group_size, packed.padded_N, 0, 0], dtype=np.uint32)
        p_buffer = device.create_buffer_with_data(data=params, usage=usage.UNIFORM)
        bind_group = device.create_bind_group(layout=self.bind_group_layout, entries=[
            {"binding": 0, "resource": {"buffer": out_buffer, "offset": GUARD_WORDS * 4, "size": out_words * 4}},
            {"binding": 1, "resource": {"buffer": x_buffer}},
            {"binding": 2, "resource": {"buffer": w_buffer}},
            {"binding": 3, "resource": {"buffer": s_buffer}},
            {"binding": 4, "resource": {"buffer": bias_buffer}},
            {"binding": 5, "resource": {"buffer": p_buffer}},
        ])
        counts = (*workgroups, 1, 1)[:3]
        gpu_s = None
        for _ in range(max(1, repeats)):
            query_set = resolve_buffer = None
            encoder = device.create_command_encoder()
            timestamp_writes = None
            if self.timestamps:
                query_set = device.create_query_set(type=wgpu.QueryType.timestamp, count=2)
                resolve_buffer = device.create_buffer(size=16, usage=usage.QUERY_RESOLVE | usage.COPY_SRC)
                timestamp_writes = {"query_set": query_set, "beginning_of_pass_write_index": 0,
                                    "end_of_pass_write_index": 1}
            compute_pass = encoder.begin_compute_pass(timestamp_writes=timestamp_writes)
            compute_pass.set_pipeline(pipeline)
            compute_pass.set_bind_group(0, bind_group)
            compute_pass.dispatch_workgroups(*counts)
            compute_pass.end()
            if query_set is not None:
                encoder.resolve_query_set(query_set, 0, 2, resolve_buffer, 0)
            device.queue.submit([encoder.finish()])
            if resolve_buffer is not None:
                stamps = np.frombuffer(device.queue.read_buffer(resolve_buffer), dtype=np.uint64)
                elapsed = float(stamps[1] - stamps[0]) * 1e-9
                gpu_s = elapsed if gpu_s is None else min(gpu_s, elapsed)
        raw = np.frombuffer(device.queue.read_buffer(out_buffer), dtype=np.uint32)
        wall_s = time.perf_counter() - started
        guards = np.concatenate([raw[:GUARD_WORDS], raw[GUARD_WORDS + out_words:]])
        changed = np.flatnonzero(guards != GUARD_PATTERN)
        violations = [int((i - GUARD_WORDS) * 4) if i < GUARD_WORDS else int((out_words + i - GUARD_WORDS) * 4)
                      for i in changed]
        output = raw[GUARD_WORDS:GUARD_WORDS + out_words].view(np.float32).reshape(M, N).copy()
        for buffer in (out_buffer, x_buffer, w_buffer, s_buffer, bias_buffer, p_buffer):
            buffer.destroy()
        return GpuRun(output=output, guard_violations=violations, wall_s=wall_s, gpu_s=gpu_s,
                      workgroups=tuple(counts), constants=dict(constants))


def applicable_kernels(kernels: tuple[Kernel, ...], config: Config, backend: Backend) -> list[Kernel]:
    """Kernels whose `when` holds for this shape and that may run on this backend."""
    shape = config.shape_names()
    env = {**shape, **{short: 1 << 30 for short in LIMIT_NAMES}}
    chosen = []
    for kernel in kernels:
        if kernel.backends is not None and backend.name not in kernel.backends:
            continue
        names = dict(env)
        for name, value in kernel.overrides.items():
            names[name] = evaluate(value, names) if isinstance(value, str) else value
        if evaluate(kernel.when, names):
            chosen.append(kernel)
    return chosen
