"""Kernel expressions (q4gsw.matrix.expressions): which kernel applies to a config's shape and backend (kernel_applies),
and resolve_kernel's overrides, dispatch, required features and limits against a real adapter's limits. Pure
logic, no adapter needed."""

import dataclasses
from pathlib import Path

import pytest

from q4gsw.matrix.expressions import KernelUnsupported, kernel_applies, resolve_kernel
from q4gsw.matrix.load import load_matrix
from q4gsw.webgpu.adapter import AdapterInfo

SWIFTSHADER_LIMITS = {"max-compute-workgroups-per-dimension": 65535, "max-compute-invocations-per-workgroup": 256,
                      "max-compute-workgroup-storage-size": 32768, "max-compute-workgroup-size-x": 256}


def _info(limits: dict[str, int], features: tuple[str, ...] = ()) -> AdapterInfo:
    return AdapterInfo(name="SwiftShader Device (Subzero)", vendor="", device_type="CPU", api="Vulkan", driver="",
                       webgpu="wgpu-native", features=features, limits=limits)


def test_kernel_selection_by_shape(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    backend = matrix.backend("swiftshader")
    for config, expected in (("tiny_gemv", ["gemv"]), ("tiny_gemm", ["tiled"])):
        assert [k.name for k in matrix.kernels if kernel_applies(k, matrix.config(config), backend)] == expected


def test_kernel_applies_only_on_the_adapters_it_is_written_for(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    gemv = next(k for k in matrix.kernels if k.name == "gemv")
    config = matrix.config("tiny_gemv")
    backend = matrix.backend("swiftshader")  # device_type CPU, adapter_name "SwiftShader"
    assert kernel_applies(dataclasses.replace(gemv, device_type="CPU"), config, backend)
    assert kernel_applies(dataclasses.replace(gemv, adapter_name="Swift"), config, backend)
    assert not kernel_applies(dataclasses.replace(gemv, device_type="GPU"), config, backend)
    assert not kernel_applies(dataclasses.replace(gemv, adapter_name="llvmpipe"), config, backend)
    assert not kernel_applies(dataclasses.replace(gemv, op="embedding_q4gsw"), config, backend)
    renamed = dataclasses.replace(backend, name="swiftshader-copy")  # a backend is what its adapter is, not its name
    assert kernel_applies(dataclasses.replace(gemv, device_type="CPU", adapter_name="Swift"), config, renamed)


def test_the_real_adapter_decides_at_run_time(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    gemv = dataclasses.replace(next(k for k in matrix.kernels if k.name == "gemv"), adapter_name="llvmpipe")
    shape = {"M": 1, "N": 8, "K": 64, "K_packed": 32, "group_size": 32}
    with pytest.raises(KernelUnsupported, match="written for"):
        resolve_kernel(gemv, shape, _info(SWIFTSHADER_LIMITS))
    assert resolve_kernel(dataclasses.replace(gemv, adapter_name=""), shape, _info(SWIFTSHADER_LIMITS))[1] == (1,)


def test_dispatch_and_overrides_evaluate_against_adapter_limits(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    gemv = next(k for k in matrix.kernels if k.name == "gemv")
    lm_head = {"M": 1, "N": 128256, "K": 2048, "K_packed": 1024, "group_size": 32}
    overrides, counts = resolve_kernel(gemv, lm_head, _info(SWIFTSHADER_LIMITS))
    assert overrides == {"wg_size": 64}  # min(64, max_invocations_per_workgroup)
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


def test_dispatch_out_of_range_or_when_false_on_the_adapter_is_unsupported(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    gemv = next(k for k in matrix.kernels if k.name == "gemv")
    shape = {"M": 1, "N": 8, "K": 64, "K_packed": 32, "group_size": 32}
    with pytest.raises(KernelUnsupported, match=r"dispatch \(70000,\) is outside 1\.\.65535"):
        resolve_kernel(dataclasses.replace(gemv, dispatch=("70000",)), shape, _info(SWIFTSHADER_LIMITS))
    with pytest.raises(KernelUnsupported, match=r"dispatch \(1, 0\) is outside"):
        resolve_kernel(dataclasses.replace(gemv, dispatch=("1", "0")), shape, _info(SWIFTSHADER_LIMITS))
    # `when` is evaluated again with the adapter's real limits: selection assumed a generous adapter.
    picky = dataclasses.replace(gemv, when="max_invocations_per_workgroup >= 1024")
    assert kernel_applies(picky, matrix.config("tiny_gemv"), matrix.backend("swiftshader"))
    with pytest.raises(KernelUnsupported, match="does not hold on SwiftShader"):
        resolve_kernel(picky, shape, _info(SWIFTSHADER_LIMITS))



def test_a_failing_expression_says_the_ops_dims_and_only_the_other_names_it_uses(tiny_matrix: Path):
    """The message names the op's dims and, beyond them, only what the expression reads (a derived name, a limit):
    not every derived name and runtime option of the environment (K_packed, f16_accumulate_gemm: noise)."""
    gemv = dataclasses.replace(next(k for k in load_matrix(tiny_matrix).kernels if k.name == "gemv"), when="1")
    shape = {"M": 3, "N": 16, "K": 64, "K_packed": 32, "group_size": 32, "f16_accumulate_gemm": 0}
    with pytest.raises(KernelUnsupported) as constant:
        resolve_kernel(dataclasses.replace(gemv, dispatch=("70000",)), shape, _info(SWIFTSHADER_LIMITS))
    assert str(constant.value).endswith("for M=3, K=64, N=16, group_size=32")
    with pytest.raises(KernelUnsupported) as derived:
        resolve_kernel(dataclasses.replace(gemv, dispatch=("K_packed * 4096",)), shape, _info(SWIFTSHADER_LIMITS))
    assert str(derived.value).endswith("for M=3, K=64, N=16, group_size=32, K_packed=32")
    with pytest.raises(KernelUnsupported) as failing:
        resolve_kernel(dataclasses.replace(gemv, dispatch=("N // (M - 3)",)), shape, _info(SWIFTSHADER_LIMITS))
    assert "cannot be evaluated for M=3, K=64, N=16, group_size=32: ZeroDivisionError" in str(failing.value)
