"""The GPU-grade kernels of op linear_q4gsw (q4gsw/ops/linear_q4gsw/kernels/gpu_*.wgsl, issue #5) on lavapipe,
against the fp64 golden; and that matrix.toml declares them for GPU backends and lavapipe only.

Shapes are small but hit every edge the kernels handle: M and N not multiples of the tiles (GEMM
64x64, GEMV 128-row blocks), K not a multiple of the 32-element chunk / K step, group sizes 8, 16,
32, 64 and 128, a grid-strided GEMV (fewer workgroups than row blocks), and both ramp (exact in
f16) and normal (not exact in f16) inputs. Weights are random int4 nibbles over the whole [-8, 7]
range with random per-group scales, packed with q4gsw.ops.linear_q4gsw.layout.pack_int4.

Each shape is a synthetic fixture run through the engine (q4gsw.run.stages.run_selection: provisioning,
the adapter probe and every shape's cases, as `q4gsw run --in-process` in a process of its own). Kernel
files, dispatch expressions and required features come from matrix.toml, so the test checks what the matrix
declares; only the forced overrides and dispatches below are the test's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pytest
from helpers import MATRIX, make_config, random_packed, require_backend, run_cases, write_fixture

from q4gsw.cases import Case
from q4gsw.matrix.expressions import kernel_applies
from q4gsw.matrix.load import Tolerance, load_matrix, split_dispatch
from q4gsw.ops import inputs
from q4gsw.ops.linear_q4gsw.layout import PackedLinear
from q4gsw.report.result import Result

SEED = 7
F32_EPS = 2.0**-24  # unit roundoff of fp32
F16_EPS = 2.0**-11  # unit roundoff of f16

# (M, K, N, group_size, input): M and N off the tile grid, K tails, every group size.
GEMV_SHAPES = [
    (1, 64, 8, 8, "normal"),           # one partial block, one partial x chunk
    (1, 1000, 136, 8, "normal"),       # K/8 = 125 words: the last 16-byte chunk of a row is partial
    (1, 1040, 264, 16, "ramp"),        # N = 2 blocks + 8 rows
    (1, 2048, 200, 32, "normal"),      # two x chunks
    (1, 1280, 72, 64, "ramp"),
    (1, 4096, 24, 128, "normal"),      # four x chunks, tiny N
]
GEMM_SHAPES = [
    (2, 40, 8, 8, "normal"),           # K = 40: one partial K step
    (5, 96, 40, 32, "ramp"),
    (64, 128, 64, 64, "normal"),       # exactly one tile
    (67, 136, 72, 8, "normal"),        # M, N, K all past a tile / step boundary
    (130, 528, 136, 16, "ramp"),       # 3 x 3 tiles, K tail of 16
    (33, 1024, 200, 128, "normal"),
]
# The grid-stride loop only runs more than once when N / 128 exceeds the workgroups dispatched;
# on real shapes that takes N > 8.4M, so it is forced here with an explicit 2-workgroup dispatch.
GRID_STRIDE = {"shape": (1, 512, 1000, 32, "normal"), "dispatch": "2"}

# gpu_gemv_rows picks rows per team (rpt) from N; its edge shapes all get rpt = 1, so rpt = 2, 3
# (a non-power-of-two block) and 4 are forced on partial blocks, K tails and grid strides.
GEMV_ROWS_EXTRA = [
    {"shape": [1, 1000, 136, 8, "normal"], "overrides": {"rpt": 2}},
    {"shape": [1, 1040, 264, 16, "ramp"], "overrides": {"rpt": 3}},
    {"shape": [1, 2048, 200, 32, "normal"], "overrides": {"rpt": 4}},
    {"shape": [1, 4096, 24, 128, "normal"], "overrides": {"rpt": 4}},
    {"shape": [1, 512, 1000, 32, "normal"], "overrides": {"rpt": 4}, "dispatch": "3"},
    {"shape": [1, 1280, 72, 64, "ramp"], "overrides": {"rpt": 2}, "dispatch": "2"},
]

# gpu_gemv_fast: rpt 1-4 and 4-team workgroups (teams override) on partial blocks, K tails (chunks of
# min(2048, 64 * gs): gs 8 and 16 give several chunks with a partial last one) and grid strides.
GEMV_FAST_EXTRA = [
    {"shape": [1, 1000, 136, 8, "normal"], "overrides": {"rpt": 2}},
    {"shape": [1, 1040, 264, 16, "ramp"], "overrides": {"rpt": 3}},
    {"shape": [1, 2048, 200, 32, "normal"], "overrides": {"rpt": 4}},
    {"shape": [1, 4096, 24, 128, "normal"], "overrides": {"rpt": 4}},
    {"shape": [1, 2600, 100, 8, "ramp"], "overrides": {"rpt": 4, "teams": 4}},
    {"shape": [1, 6144, 40, 64, "normal"], "overrides": {"rpt": 1, "teams": 4}},
    {"shape": [1, 512, 1000, 32, "normal"], "overrides": {"rpt": 4}, "dispatch": "3"},
    {"shape": [1, 1280, 72, 64, "ramp"], "overrides": {"rpt": 2}, "dispatch": "2"},
]

# gpu_gemv_vec4 (K % 32 == 0, group_size % 32 == 0): rpt 1-4 and 4-team workgroups on partial blocks, a
# partial single chunk (K = 1280: the second vec of each lane lies past the row), a partial second chunk
# (K = 2560) and grid strides.
GEMV_VEC4_EXTRA = [
    {"shape": [1, 2048, 200, 32, "normal"], "overrides": {"rpt": 4}},
    {"shape": [1, 4096, 24, 128, "normal"], "overrides": {"rpt": 3}},
    {"shape": [1, 2560, 100, 32, "ramp"], "overrides": {"rpt": 3, "teams": 4}},
    {"shape": [1, 6144, 40, 64, "normal"], "overrides": {"rpt": 1, "teams": 4}},
    {"shape": [1, 512, 1000, 32, "normal"], "overrides": {"rpt": 4}, "dispatch": "3"},
    {"shape": [1, 1280, 72, 64, "ramp"], "overrides": {"rpt": 2}, "dispatch": "2"},
]

KERNEL_SHAPES = {"gpu_gemv": GEMV_SHAPES, "gpu_gemv_rows": GEMV_SHAPES, "gpu_gemv_fast": GEMV_SHAPES,
                 "gpu_gemv_vec4": GEMV_SHAPES, "gpu_gemm": GEMM_SHAPES, "gpu_gemm_f16": GEMM_SHAPES}


def make_packed(M: int, K: int, N: int, group_size: int, seed: int = SEED) -> PackedLinear:
    """Random int4 weights over all 16 nibbles and random positive/negative scales."""
    rng = np.random.default_rng([seed, M, K, N, group_size])
    padded_N = N + 8 if N % 16 else N  # the kernels must use params.padded_N for the scale stride: pad it when N allows
    return random_packed(N, K, group_size, rng, scale=(0.2, 1.0), scale_factor=1 / (np.sqrt(K) * 7.5),
                         padded_N=padded_N, signed_scales=True)


@dataclass(frozen=True)
class Spec:
    """One case of the test: a kernel (maybe with forced overrides or dispatch) on a shape and input."""

    kernel: str
    shape: tuple[int, int, int, int, str]
    overrides: tuple[tuple[str, int], ...] = ()
    dispatch: str = ""

    @property
    def variant(self) -> str:
        """The kernel's name in the case id: forced overrides and dispatch make it a variant of its own."""
        extra = [f"{k}={v}" for k, v in self.overrides] + ([f"dispatch={self.dispatch}"] if self.dispatch else [])
        return f"{self.kernel}[{','.join(extra)}]" if extra else self.kernel


def specs_of(kernel: str) -> list[Spec]:
    """The kernel's cases whose shape satisfies the kernel's `when` in matrix.toml (gpu_gemm_f16: M >= 64)."""
    specs = [Spec(kernel, shape) for shape in KERNEL_SHAPES[kernel]]
    if kernel in ("gpu_gemv", "gpu_gemv_rows", "gpu_gemv_fast", "gpu_gemv_vec4"):
        specs.append(Spec(kernel, GRID_STRIDE["shape"], dispatch=GRID_STRIDE["dispatch"]))
    extra = {"gpu_gemv_rows": GEMV_ROWS_EXTRA, "gpu_gemv_fast": GEMV_FAST_EXTRA,
             "gpu_gemv_vec4": GEMV_VEC4_EXTRA}.get(kernel, [])
    specs += [Spec(kernel, tuple(e["shape"]), tuple(e["overrides"].items()), e.get("dispatch", "")) for e in extra]
    matrix = load_matrix(MATRIX)
    declared = dataclasses.replace(next(k for k in matrix.kernels if k.name == kernel), device_type="", adapter_name="")
    return [spec for spec in specs
            if kernel_applies(declared, make_config("when", *spec.shape[:4]), matrix.backend("lavapipe"))]


def config_name(M: int, K: int, N: int, group_size: int) -> str:
    return f"g{M}x{K}x{N}gs{group_size}"


def f16_tolerance(M: int, K: int, N: int, group_size: int, input_name: str) -> tuple[Tolerance, float, float]:
    """The f16 tiles' bounds as the case's tolerance (atol, rtol 0), with (6 sigma, rigorous bound) beside it.

    x (unless exact in f16) and q*s are each rounded once to f16 (relative <= 2^-11, q*s after an
    exact-or-rounded f32 product: 2^-11 + 2^-24), products are exact in fp32 and the sum is fp32. Rigorous per
    element: |err| <= (sources * (2^-11 + 2^-24) + K * 2^-24) * sum_k |x w|. Also tight in aggregate: the
    rounding errors are independent with std <= 2^-11 / sqrt(3) each, so the largest error stays below 6
    standard deviations of the largest output. The engine compares against atol + rtol*|g|, so the case's atol
    is the smaller of the 6-sigma bound and the rigorous bound of the element with the smallest sum |x w|: a
    pass then implies both bounds for every element."""
    x = inputs.make_input(input_name, M, K, SEED)
    w = make_packed(M, K, N, group_size).dequantized_rows(0, N)  # fp64 [N, K]
    abs_xw = np.abs(x.astype(np.float64)) @ np.abs(w).T  # sum_k |x w| per output
    l2_xw = np.sqrt(x.astype(np.float64) ** 2 @ (w**2).T)  # ||x * w||_2 per output
    sources = 1 if bool((x.astype(np.float16).astype(np.float32) == x).all()) else 2
    rigorous = (sources * (F16_EPS + F32_EPS) + K * F32_EPS) * float(abs_xw.min())
    six_sigma = 6 * np.sqrt(sources / 3.0) * F16_EPS * float(l2_xw.max())
    return (Tolerance(atol=min(rigorous, six_sigma), rtol=0.0, justification="f16 tiles: see f16_tolerance"),
            six_sigma, rigorous)


FP32_TOLERANCE = Tolerance(atol=5e-6, rtol=1e-5, justification="fp32 accumulation only: a flat bound far below "
                                                                "one int4 step (|x| * |s| ~ 1e-3 here)")


# Session scope, not module: xdist's loadgroup keeps this module's tests on one worker but may interleave other
# modules' tests between them, and pytest then tears a module fixture down and builds it again.
@pytest.fixture(scope="session")
def gpu_results(tmp_path_factory: pytest.TempPathFactory, lavapipe_env: dict[str, str]) -> dict[Spec, Result]:
    """Every kernel's specs on lavapipe through the engine: one fixture per shape, all run as one `run
    --in-process` in a process of its own (each pipeline compiled once, not once per shape)."""
    matrix = load_matrix(MATRIX)
    backend = matrix.backend("lavapipe")
    kernels = {k.name: k for k in matrix.kernels}
    folder = tmp_path_factory.mktemp("gpu-kernels")
    specs = [spec for kernel in sorted(KERNEL_SHAPES) for spec in specs_of(kernel)]
    shapes: dict[tuple[int, int, int, int], list[str]] = {}
    for spec in specs:
        inputs_of = shapes.setdefault(spec.shape[:4], [])
        if spec.shape[4] not in inputs_of:
            inputs_of.append(spec.shape[4])
    configs = {}
    for (M, K, N, gs), input_names in shapes.items():
        configs[(M, K, N, gs)] = make_config(config_name(M, K, N, gs), M, K, N, gs, input_names, weight_seed=SEED,
                                             timeout_s=300)
        write_fixture(folder / "fixtures", configs[(M, K, N, gs)], make_packed(M, K, N, gs))
    by_id: dict[str, Spec] = {}
    cases = []
    for spec in specs:
        kernel = kernels[spec.kernel]
        changes: dict = {"name": spec.variant}
        if spec.dispatch:
            changes["dispatch"] = split_dispatch(spec.dispatch)
        if spec.overrides:
            changes["overrides"] = MappingProxyType({**kernel.overrides, **dict(spec.overrides)})
        tolerance = f16_tolerance(*spec.shape)[0] if spec.kernel.endswith("_f16") else FP32_TOLERANCE
        case = Case(config=configs[spec.shape[:4]], kernel=dataclasses.replace(kernel, **changes),
                    input=spec.shape[4], backend=backend, tolerance=tolerance)
        assert case.id not in by_id, case.id
        by_id[case.id] = spec
        cases.append(case)
    results = run_cases(cases, folder / "fixtures", folder / "cache", in_process=True)
    require_backend(results)
    assert set(results) == set(by_id), "some cases have no result"
    return {by_id[case_id]: result for case_id, result in results.items()}


@pytest.mark.e2e
@pytest.mark.xdist_group("lavapipe-kernels")  # one worker: gpu_results (every kernel at once) runs once
@pytest.mark.parametrize("kernel", sorted(KERNEL_SHAPES))
def test_gpu_kernel_matches_fp64_golden(kernel: str, gpu_results: dict[Spec, Result]):
    mine = {spec: r for spec, r in gpu_results.items() if spec.kernel == kernel}
    assert len(mine) == len(specs_of(kernel)) >= 3, f"{kernel}: too few test shapes satisfy its `when`"
    problems = []
    for spec, r in mine.items():
        where = f"{spec.variant} M,K,N,gs,input={list(spec.shape)} workgroups={list(r.workgroups)}"
        if r.errors is None:  # never ran: unsupported, compile error, crash
            problems.append(f"{where}: {r.status}: {r.message}")
        elif r.errors.guard_violations:
            problems.append(f"{where}: wrote outside the output ({r.errors.guard_violations} guard words)")
        elif r.errors.nonfinite:
            problems.append(f"{where}: NaN/Inf in the output (an element never written?)")
        elif r.status != "pass":
            bounds = ""
            if kernel.endswith("_f16"):
                _, six_sigma, rigorous = f16_tolerance(*spec.shape)
                bounds = f" (6 sigma {six_sigma:.3g}, rigorous bound of the smallest output {rigorous:.3g})"
            problems.append(f"{where}: max |err| {r.errors.max_abs:.3g} exceeds the bound{bounds} "
                            f"(headroom {r.errors.headroom:.2f}): {r.message}")
    assert not problems, "\n".join(problems)


@pytest.mark.e2e
@pytest.mark.xdist_group("lavapipe-kernels")
def test_forced_overrides_and_dispatches_really_ran(gpu_results: dict[Spec, Result]):
    """The forced rpt / teams and grid-stride dispatches reach the kernel: the recorded workgroups follow them."""
    for spec, r in gpu_results.items():
        if spec.dispatch and r.status == "pass":
            assert r.workgroups[:len(split_dispatch(spec.dispatch))] == tuple(
                int(d) for d in split_dispatch(spec.dispatch)), spec


def test_matrix_declares_gpu_kernels_for_gpu_backends_and_lavapipe_only():
    from q4gsw.matrix.expressions import written_for

    matrix = load_matrix(MATRIX)
    gpus = {name for name, backend in matrix.backends.items() if backend.device_type == "GPU"}
    kernels = {k.name: k for k in matrix.kernels}
    for name in KERNEL_SHAPES:
        runs_on = {b.name for b in matrix.backends.values()
                   if written_for(kernels[name], b.device_type, b.adapter_name)}
        assert runs_on == gpus | {"lavapipe"}, name
    assert kernels["gpu_gemm_f16"].requires_features == ("shader-f16",)
    assert kernels["gpu_gemm_f16"].tolerance is not None

