"""Adapter matching (Backend.matches in q4gsw.matrix.values, used by q4gsw.webgpu.adapter to pick a backend's adapter):
a backend never accepts another adapter, offline; and, on SwiftShader, a backend whose adapter is not there fails
its required configs with the adapters seen, and no fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli, write_fault_matrix
from helpers import only, results_json

from q4gsw.matrix.load import load_matrix
from q4gsw.webgpu.adapter import AdapterInfo


@pytest.mark.parametrize(("backend", "info", "expected"), [
    ("swiftshader", {"device": "SwiftShader Device (Subzero)", "adapter_type": "CPU", "backend_type": "Vulkan"}, True),
    ("swiftshader", {"device": "llvmpipe (LLVM 15.0.6, 256 bits)", "adapter_type": "CPU", "backend_type": "Vulkan"},
     False),
    ("lavapipe", {"device": "llvmpipe (LLVM 15.0.6, 256 bits)", "adapter_type": "CPU", "backend_type": "Vulkan"}, True),
    # Mesa's GL llvmpipe is not lavapipe: wrong API
    ("lavapipe", {"device": "llvmpipe (LLVM 15.0.6, 256 bits)", "adapter_type": "CPU", "backend_type": "OpenGL"},
     False),
    ("native", {"device": "NVIDIA H100 80GB HBM3", "adapter_type": "DiscreteGPU", "backend_type": "Vulkan"}, True),
    ("native", {"device": "SwiftShader Device (Subzero)", "adapter_type": "CPU", "backend_type": "Vulkan"}, False),
    ("native", {"device": "llvmpipe (LLVM 15.0.6, 256 bits)", "adapter_type": "CPU", "backend_type": "OpenGL"}, False),
])
def test_backend_adapter_matching_never_accepts_another_adapter(backend: str, info: dict, expected: bool):
    from conftest import MATRIX

    adapter = AdapterInfo(name=info["device"], device_type=info["adapter_type"], api=info["backend_type"])
    assert load_matrix(MATRIX).backend(backend).matches(adapter) is expected


@pytest.mark.e2e
def test_backend_without_its_adapter_fails_required_configs(tmp_path: Path, swiftshader_icd: dict,
                                                            fault_fixtures: Path) -> None:
    matrix = write_fault_matrix(tmp_path / "matrix.toml")
    done = run_cli("run", "--matrix", str(matrix), "--backend", "ghost", "--fixtures", str(fault_fixtures),
                   "--results", str(tmp_path / "r"), env=swiftshader_icd, timeout=300)
    assert done.returncode == 1
    _, results = results_json(tmp_path / "r")
    assert [only(results[c])["status"] for c in "abh"] == ["fail", "fail", "skip"]
    for config in "ab":  # the adapter is probed before anything is exported
        assert only(results[config])["message"] == (
            "backend 'ghost' unavailable: backend 'ghost' needs an adapter matching /NoSuchAdapter/ (CPU, Vulkan) "
            "through wgpu-native; adapters seen: SwiftShader Device (Subzero) (CPU, Vulkan). No fallback to another "
            "adapter or WebGPU implementation is made.")
    assert "error: backend 'ghost' unavailable: " in done.stdout  # on the run's console, with its clock
    assert only(results["h"])["message"] == "heavy: run `nox -s heavy`"

