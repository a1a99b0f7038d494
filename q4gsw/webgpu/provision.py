"""Provisioning (parent process): find or install the Vulkan ICD a backend names.

The result is a set of environment variables for the child processes, because the Vulkan loader
reads them only once, when wgpu first loads it. Installing into the cache is serialized by a file
lock (the same mechanism as fixtures), so two runs on a fresh cache both succeed.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from filelock import FileLock

from q4gsw.matrix.load import Backend
from q4gsw.paths import CACHE_ENV, CacheError, NotOurs, cache_root, mark_owned, remove_owned, usable_directory
from q4gsw.webgpu.adapter import BackendUnavailable  # one class: the engine catches it around provision + probe

SWIFTSHADER_ICD_ENV = "Q4GSW_SWIFTSHADER_ICD"
LAVAPIPE_ICD_ENV = "Q4GSW_LAVAPIPE_ICD"
LOCK_TIMEOUT_S = 600
APT_LOCK = str(Path(tempfile.gettempdir()) / "q4gsw-apt.lock")  # apt and dpkg allow one user at a time
WGPU_API_NAMES = {"Vulkan": "Vulkan", "Metal": "Metal", "D3D12": "DX12"}


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(packages: list[str], why: str) -> None:
    command = ["apt-get", "install", "-y", "-q", *packages]
    if not _is_root() or shutil.which("apt-get") is None:
        raise BackendUnavailable(f"{why}. Install it with: sudo apt-get update && sudo {' '.join(command)}")
    # apt/dpkg allow one user at a time: concurrent runs wait for each other instead of failing on dpkg's lock.
    with FileLock(APT_LOCK):
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
    unpacked = _unpacked_swiftshader(cache_root() / "swiftshader")
    if unpacked:  # found without writing anything (no lock file): a read-only cache holding it runs
        return unpacked
    try:
        target = usable_directory(usable_directory(cache_root(), "cache") / "swiftshader", "cache")
    except CacheError as exc:
        raise BackendUnavailable(f"{exc} (or set {SWIFTSHADER_ICD_ENV} to an existing vk_swiftshader_icd.json)") \
            from None
    lock = FileLock(str(target / ".lock"))
    try:
        # Two runs on a fresh cache: the second waits here, then finds the first one's SwiftShader.
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except TimeoutError as exc:
        raise BackendUnavailable(f"another q4gsw process has held {target / '.lock'} for {LOCK_TIMEOUT_S} s while "
                                 "provisioning SwiftShader: wait for it, or remove the lock file if no q4gsw is "
                                 "running") from exc
    except OSError as exc:
        raise BackendUnavailable(f"cannot lock {target / '.lock'} ({exc.strerror or exc}): point {CACHE_ENV} at a "
                                 f"writable folder, or set {SWIFTSHADER_ICD_ENV}") from exc
    try:
        # Another run may have finished unpacking while this one waited for the lock.
        return _unpacked_swiftshader(target) or _unpack_swiftshader(target)
    finally:
        lock.release()


def _unpacked_swiftshader(target: Path) -> dict[str, str] | None:
    icd = target / "vk_swiftshader_icd.json"
    try:
        if icd.is_file() and Path(json.loads(icd.read_text())["ICD"]["library_path"]).is_file():
            return {"VK_ICD_FILENAMES": str(icd), "VK_DRIVER_FILES": str(icd)}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a damaged ICD file is rebuilt below
    return None


def _unpack_swiftshader(target: Path) -> dict[str, str]:
    """Download chromium-common and unpack its SwiftShader; the caller holds the cache lock."""
    icd = target / "vk_swiftshader_icd.json"
    fix = (f"run as root on Debian/Ubuntu with apt, or set {SWIFTSHADER_ICD_ENV} to an existing "
           "vk_swiftshader_icd.json (e.g. from a Chromium build)")
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise BackendUnavailable(f"SwiftShader not found and apt-get/dpkg are unavailable: {fix}")
    print("[q4gsw] provisioning SwiftShader from Debian's chromium-common (download + unpack, no install)",
          flush=True)
    # Every folder made here holds OWNED_MARKER and is deleted only through paths.remove_owned.
    for stale in target.glob(".download-*"):  # left by a killed run (this one holds the lock)
        with contextlib.suppress(NotOurs):
            remove_owned(stale, target)
    download = mark_owned(target / f".download-{os.getpid()}", "a download of chromium-common")
    try:
        return _download_and_unpack(target, download, icd, fix)
    finally:
        remove_owned(download, target)


def _download_and_unpack(target: Path, download: Path, icd: Path, fix: str) -> dict[str, str]:
    result = subprocess.run(["apt-get", "download", "chromium-common"], cwd=download, capture_output=True, text=True)
    if result.returncode and _is_root():
        with FileLock(APT_LOCK):
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        result = subprocess.run(["apt-get", "download", "chromium-common"], cwd=download, capture_output=True,
                                text=True)
    debs = glob.glob(str(download / "chromium-common_*.deb"))
    if result.returncode or not debs:
        raise BackendUnavailable(f"`apt-get download chromium-common` failed ({result.stderr.strip()[-500:]}): "
                                 f"run `sudo apt-get update` first, or {fix}")
    # One folder per package version (a damaged one of this version is replaced only if q4gsw made it).
    unpacked = target / Path(debs[0]).stem
    try:
        remove_owned(unpacked, target)
    except NotOurs as exc:
        raise BackendUnavailable(f"cannot unpack SwiftShader: {exc}") from None
    mark_owned(unpacked, "SwiftShader unpacked from chromium-common")
    unpack = subprocess.run(["dpkg", "-x", debs[0], str(unpacked)], capture_output=True, text=True)
    if unpack.returncode:
        raise BackendUnavailable(f"`dpkg -x {debs[0]}` failed: {unpack.stderr.strip()[-500:]}; {fix}")
    libraries = glob.glob(str(unpacked / "usr/lib/chromium/libvk_swiftshader.so"))
    if not libraries:
        raise BackendUnavailable(f"chromium-common ({debs[0]}) has no libvk_swiftshader.so: {fix}")
    icd_tmp = icd.with_suffix(f".tmp{os.getpid()}")
    icd_tmp.write_text(json.dumps({"file_format_version": "1.0.0",
                                   "ICD": {"library_path": libraries[0], "api_version": "1.0.5"}}))
    os.replace(icd_tmp, icd)
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
