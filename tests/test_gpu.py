"""Kernel selection and adapter matching: pure logic, no adapter needed."""

from pathlib import Path

import pytest

from q4gsw.gpu import AdapterInfo, KernelUnsupported, applicable_kernels, resolve_kernel
from q4gsw.matrix import load_matrix

SWIFTSHADER_LIMITS = {"max-compute-workgroups-per-dimension": 65535, "max-compute-invocations-per-workgroup": 256,
                      "max-compute-workgroup-storage-size": 32768, "max-compute-workgroup-size-x": 256}


def _info(limits: dict[str, int], features: tuple[str, ...] = ()) -> AdapterInfo:
    return AdapterInfo(name="SwiftShader Device (Subzero)", vendor="", device_type="CPU", api="Vulkan", driver="",
                       features=features, limits=limits)


def test_kernel_selection_by_shape(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    backend = matrix.backend("swiftshader")
    assert [k.name for k in applicable_kernels(matrix.kernels, matrix.config("tiny_gemv"), backend)] == ["gemv"]
    assert [k.name for k in applicable_kernels(matrix.kernels, matrix.config("tiny_gemm"), backend)] == ["tiled"]


def test_dispatch_and_overrides_evaluate_against_adapter_limits(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    gemv = next(k for k in matrix.kernels if k.name == "gemv")
    lm_head = {"M": 1, "N": 128256, "K": 2048, "K_packed": 1024, "group_size": 32}
    constants, counts = resolve_kernel(gemv, lm_head, _info(SWIFTSHADER_LIMITS))
    assert constants == {"wg_size": 64}  # min(64, max_invocations_per_workgroup)
    assert counts == (251,)  # ceil(N / (8 * wg_size))
    narrow = _info({**SWIFTSHADER_LIMITS, "max-compute-invocations-per-workgroup": 16})
    assert resolve_kernel(gemv, lm_head, narrow) == ({"wg_size": 16}, (1002,))
    capped = type(gemv)(**{**gemv.__dict__, "dispatch": ("min(ceil(N / 4), max_workgroups_per_dimension)",)})
    limited = _info({**SWIFTSHADER_LIMITS, "max-compute-workgroups-per-dimension": 1000})
    assert resolve_kernel(capped, lm_head, limited)[1] == (1000,)


def test_missing_feature_or_limit_is_unsupported(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    gemv = next(k for k in matrix.kernels if k.name == "gemv")
    needy = type(gemv)(**{**gemv.__dict__, "requires_features": ("shader-f16",)})
    with pytest.raises(KernelUnsupported, match="shader-f16"):
        resolve_kernel(needy, {"M": 1, "N": 8, "K": 64, "K_packed": 32, "group_size": 32}, _info(SWIFTSHADER_LIMITS))
    small = type(gemv)(**{**gemv.__dict__, "requires_limits": {"max_invocations_per_workgroup": 1024}})
    with pytest.raises(KernelUnsupported, match="max_invocations_per_workgroup >= 1024"):
        resolve_kernel(small, {"M": 1, "N": 8, "K": 64, "K_packed": 32, "group_size": 32}, _info(SWIFTSHADER_LIMITS))


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

    assert load_matrix(MATRIX).backend(backend).matches(info) is expected
