"""The kernels of op linear_q4gsw (q4gsw/ops/linear_q4gsw/kernels, every kernel matrix.toml declares), on
SwiftShader, against the fp64 golden on small awkward shapes.

The shapes are synthetic fixtures (random int4 weights and scales, no torch) run through the engine
(q4gsw.run.stages.run_selection) as `q4gsw run --in-process` in one process of its own: it provisions
SwiftShader, probes its adapter and runs every shape's cases on one device per feature set. In a child per
shape, SwiftShader compiled each kernel again for every shape: ~10 CPU s apiece for gpu_gemv_fast and
gpu_gemv_vec4, 12 times, most of this module's ~190 s.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import MATRIX, make_config, random_packed, require_backend, run_cases, write_fixture

from q4gsw.cases import Case
from q4gsw.matrix.expressions import kernel_applies, written_for
from q4gsw.matrix.load import Tolerance, load_matrix
from q4gsw.report.result import Result

# One xdist worker runs every test of this module: kernel_results (every kernel at once) then runs once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("swiftshader-kernels")]

# M, N not multiples of the 8x8 output blocks (or of a workgroup's 512 columns); K with 1, 8 and
# 32 packed words per row; every group size that divides K.
MS = (1, 2, 5, 33, 70)
NS = (8, 24, 40, 136)
KS_GROUPS = ((64, 8), (64, 32), (64, 64), (72, 8), (256, 8), (256, 32), (256, 64))
CASES = [(M, K, N, gs) for i, (M, N) in enumerate((m, n) for m in MS for n in NS)
         for K, gs in (KS_GROUPS[i % len(KS_GROUPS)], KS_GROUPS[(i + 3) % len(KS_GROUPS)])]
TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4, justification="kernel test")

Shape = tuple[int, int, int, int]


# Session scope, not module: xdist's loadgroup keeps this module's tests on one worker but may interleave other
# modules' tests between them, and pytest then tears a module fixture down and builds it again (~190 s each time).
@pytest.fixture(scope="session")
def kernel_results(tmp_path_factory: pytest.TempPathFactory, swiftshader_env: dict[str, str]
                   ) -> dict[tuple[str, Shape], Result]:
    """(kernel, shape) -> Result, for every kernel whose `when` holds on the shape, whatever backends it is
    meant for: a kernel must be exact anywhere it runs."""
    matrix = load_matrix(MATRIX)
    backend = matrix.backend("swiftshader")
    folder = tmp_path_factory.mktemp("kernel-fixtures")
    cases: dict[str, tuple[str, Shape]] = {}
    case_list = []
    for M, K, N, gs in CASES:
        config = make_config(f"s{M}x{K}x{N}g{gs}", M, K, N, gs, ("normal",), weight_seed=1, timeout_s=300,
                             tolerance=TOLERANCE)
        write_fixture(folder / "fixtures", config, random_packed(N, K, gs, np.random.default_rng([1, M, K, N, gs])))
        for declared in matrix.kernels:
            kernel = dataclasses.replace(declared, device_type="", adapter_name="")  # every kernel, on SwiftShader
            if not kernel_applies(kernel, config, backend):
                continue
            case = Case(config=config, kernel=kernel, input="normal", backend=backend, tolerance=TOLERANCE)
            case_list.append(case)
            cases[case.id] = (kernel.name, (M, K, N, gs))
    results = run_cases(case_list, folder / "fixtures", folder / "cache", in_process=True)
    require_backend(results)
    assert set(results) == set(cases), "some cases have no result"
    return {cases[case_id]: result for case_id, result in results.items()}


def _declared_kernels() -> list[str]:
    """linear_q4gsw's kernels (the other ops' kernels are checked by their own tests, on their own shapes)."""
    return [k.name for k in load_matrix(MATRIX).kernels if k.op == "linear_q4gsw"]


def test_every_shape_has_a_kernel(kernel_results: dict[tuple[str, Shape], Result]) -> None:
    covered = {shape for _, shape in kernel_results}
    assert covered == {tuple(c) for c in CASES}, "some shapes matched no kernel's `when`"


@pytest.mark.parametrize("kernel", _declared_kernels())
def test_kernel_matches_golden(kernel: str, kernel_results: dict[tuple[str, Shape], Result]) -> None:
    mine = {shape: result for (name, shape), result in kernel_results.items() if name == kernel}
    if not mine:
        pytest.skip(f"kernel '{kernel}' applies to none of the test shapes")
    failures = [f"M,K,N,gs={shape}: {r.message} (guard violations {r.errors.guard_violations if r.errors else 0})"
                for shape, r in sorted(mine.items()) if r.status == "fail"]
    unsupported = [r.message for r in mine.values() if r.status == "unsupported"]
    assert not failures, f"{kernel}: {len(failures)}/{len(mine)} shapes wrong:\n" + "\n".join(failures)
    if unsupported and len(unsupported) == len(mine):
        pytest.skip(f"{kernel} unsupported on SwiftShader: {unsupported[0]}")
    assert all(r.status in ("pass", "unsupported") for r in mine.values())


def test_cpu_kernels_run_on_swiftshader(kernel_results: dict[tuple[str, Shape], Result]) -> None:
    """The subgroup kernels meant for CPU adapters must really run (not skip as unsupported) on SwiftShader."""
    matrix = load_matrix(MATRIX)
    swiftshader = matrix.backend("swiftshader")
    cpu = [k.name for k in matrix.kernels
           if k.device_type == "CPU" and written_for(k, "CPU", swiftshader.adapter_name) and k.requires_features]
    assert cpu, "no subgroup kernel is written for SwiftShader"
    for name in cpu:
        mine = [r for (kernel, _), r in kernel_results.items() if kernel == name]
        assert mine, f"{name}: no test shape ran"
        assert all(r.status != "unsupported" for r in mine), f"{name}: {mine[0].message}"


def test_results_carry_the_adapter_and_the_case(kernel_results: dict[tuple[str, Shape], Result]) -> None:
    """Each case's Result names the SwiftShader adapter, its kernel, input and shape, and its errors."""
    for (kernel, (M, K, N, gs)), r in kernel_results.items():
        assert r.kernel == kernel and r.input == "normal" and r.backend == "swiftshader"
        assert r.shape.dims == {"M": M, "K": K, "N": N, "group_size": gs}
        assert r.adapter is not None and "SwiftShader" in r.adapter.name, r.message
        if r.status == "pass":
            assert r.errors is not None and r.errors.elements == M * N and r.errors.headroom <= 1
