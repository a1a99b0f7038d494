"""The WebGPU implementation (wgpu-native or Dawn) and the adapter a backend names (child process).

The implementation is chosen once per child process, before `wgpu` is first imported: Dawn is the
`wgpudawn` package installed as `wgpu` (same API). Feature names are spoken in one vocabulary in
matrix.toml (wgpu-native's: "subgroup", "shader-f16", ...) and translated to each implementation's
own names here, so a kernel's requirements mean the same thing on both. There is never a fallback:
a backend whose implementation is missing, or that finds no matching adapter, raises
BackendUnavailable with the adapters it did see.
"""

from __future__ import annotations

import functools
import json
import os
import re
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from q4gsw.matrix.values import AdapterInfo, Backend
from q4gsw.paths import job_folder

IMPLEMENTATIONS = ("wgpu-native", "dawn")
# The pip package each implementation ships in: its exact version is the implementation version a result records
# (and the axis of `nox -s versions-*`, docs/versions.md).
PACKAGES = {"wgpu-native": "wgpu", "dawn": "wgpudawn"}
# implementation-specific feature name -> the matrix's name for it
FEATURE_ALIASES = {"dawn": {"subgroups": "subgroup"}}
OPTIONAL_SHADER_FEATURES = ("shader-f16", "subgroup")
# Dawn quantizes timestamp queries by default (a browser security measure); a benchmark needs them exact.
DAWN_DISABLED_TOGGLES = ("timestamp_quantization",)
DAWN_PACKAGE_HINT = "pip install wgpudawn==0.32.0.4"


class BackendUnavailable(RuntimeError):
    """The requested backend's implementation or adapter cannot be found; the message says how to fix it."""


def load_wgpu(implementation: str) -> ModuleType:
    """Import `wgpu` as the requested implementation, or raise BackendUnavailable; never the other one."""
    if implementation == "dawn":
        try:
            import wgpudawn
        except ImportError as exc:
            raise BackendUnavailable(f"the backend uses Dawn (webgpu = \"dawn\") but the wgpudawn package is not "
                                     f"installed: {DAWN_PACKAGE_HINT}. No fallback to wgpu-native is made") from exc
        if not os.environ.get("XDG_RUNTIME_DIR") or not os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
            # Dawn refuses to create an instance without it ("XDG_RUNTIME_DIR is invalid").
            # A job folder (paths.job_folder), not a bare mkdtemp: once this process is gone a later run removes it.
            os.environ["XDG_RUNTIME_DIR"] = str(job_folder())
        wgpudawn.install_as_wgpu()
    import wgpu

    loaded = "dawn" if "wgpudawn" in str(getattr(wgpu, "__file__", "")) else "wgpu-native"
    if loaded != implementation:
        raise BackendUnavailable(f"asked for {implementation} but `import wgpu` gave {loaded} "
                                 "(a process can hold only one WebGPU implementation)")
    return wgpu


def package_of(implementation: str) -> str:
    """The installed package of an implementation as a pip requirement (`wgpudawn==0.32.0.4`), read from its
    metadata without importing it; `wgpudawn (not installed)` when absent."""
    package = PACKAGES[implementation]
    try:
        return f"{package}=={metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return f"{package} (not installed)"


def build_of(implementation: str) -> str:
    """The native library the package loaded (after load_wgpu): the Dawn release it was built from, or the
    wgpu-native version the library itself reports. Two package versions can ship the same build."""
    if implementation == "dawn":
        from wgpudawn import _lib

        return f"Dawn {getattr(_lib, 'dawn_version', 'release unknown')}"
    from wgpu.backends.wgpu_native import lib_version_info

    return "wgpu-native " + ".".join(str(part) for part in lib_version_info)


# dpkg-x'd package folders (q4gsw's own SwiftShader, provision.py) are named PACKAGE_VERSION_ARCH
_UNPACKED = re.compile(r"^(?P<package>[a-z0-9][a-z0-9.+-]*)_(?P<version>[^_]+)_[a-z0-9]+$")


@functools.cache
def driver_package() -> str:
    """The Vulkan driver build the loader was pointed at (VK_ICD_FILENAMES, set by provisioning): the Debian
    package and version its library was unpacked from (SwiftShader: chromium-common's), else the library's path;
    "" when the loader finds the system's drivers (a native GPU: its driver version is the adapter's `driver`)."""
    icd = os.environ.get("VK_ICD_FILENAMES", "").split(os.pathsep)[0]
    if not icd:
        return ""
    try:
        library = Path(json.loads(Path(icd).read_text())["ICD"]["library_path"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"ICD {icd} (unreadable)"
    for folder in library.parents:
        match = _UNPACKED.match(folder.name)
        if match:
            return f"{match['package']} {match['version']}"
    return str(library)


def _info_of(adapter: Any, implementation: str) -> AdapterInfo:
    info = adapter.info
    aliases = FEATURE_ALIASES.get(implementation, {})
    native = {aliases.get(str(f), str(f)): str(f) for f in adapter.features}
    return AdapterInfo(name=str(info.get("device", "")), vendor=str(info.get("vendor", "")),
                       device_type=str(info.get("adapter_type", "")), api=str(info.get("backend_type", "")),
                       driver=str(info.get("description", "")), webgpu=implementation,
                       webgpu_package=package_of(implementation), webgpu_build=build_of(implementation),
                       driver_package=driver_package(),
                       features=tuple(sorted(native)), native_features=native, limits=dict(adapter.limits))


_CONFIGURED: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []  # this process's one instance's options


def _configure_instance(implementation: str, api_names: list[str], toggles: tuple[str, ...] = ()) -> None:
    """wgpu takes its instance's options only before the process's one instance exists and raises if they are set
    again: a child selects one adapter, a `run --in-process` one per config, so the options are set once."""
    from wgpu.backends.wgpu_native import extras

    options = (implementation, tuple(api_names), tuple(toggles))
    if _CONFIGURED:
        if _CONFIGURED[0] != options:
            raise BackendUnavailable(f"this process's WebGPU instance was made for {_CONFIGURED[0]}; {options} needs "
                                     "a process of its own")
        return
    _CONFIGURED.append(options)
    if implementation == "dawn":
        extras.set_instance_extras(backends=api_names or None, enable_toggles=list(toggles),
                                   disable_toggles=list(DAWN_DISABLED_TOGGLES))
    elif api_names:
        extras.set_instance_extras(backends=api_names)


def select_adapter(backend: Backend) -> tuple[Any, AdapterInfo]:
    wgpu = load_wgpu(backend.webgpu)
    wanted = [b for b in os.environ.get("Q4GSW_WGPU_BACKENDS", "").split(",") if b]
    _configure_instance(backend.webgpu, wanted, backend.dawn_toggles)
    try:
        adapters = wgpu.gpu.enumerate_adapters_sync()
    except Exception as exc:  # Dawn raises when it finds nothing but its Null backend
        adapters = []
        problem = f"{type(exc).__name__}: {exc}"
    else:
        problem = ""
    seen = [_info_of(a, backend.webgpu) for a in adapters]
    matching = [(a, i) for a, i in zip(adapters, seen, strict=True) if backend.matches(i)]
    if not matching:
        listed = "; ".join(f"{i.name} ({i.device_type}, {i.api})" for i in seen) or "none"
        raise BackendUnavailable(
            f"backend '{backend.name}' needs an adapter matching /{backend.adapter_name}/ ({backend.device_type}, "
            f"{backend.api}) through {backend.webgpu}; adapters seen: {listed}"
            f"{' (' + problem.splitlines()[0] + ')' if problem else ''}. No fallback to another adapter or "
            "WebGPU implementation is made.")
    matching.sort(key=lambda pair: pair[1].device_type != "DiscreteGPU")
    return matching[0]
