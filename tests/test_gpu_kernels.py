"""The GPU-grade kernels (gpu_*.wgsl, issue #5) on lavapipe, against the fp64 golden.

Shapes are small but hit every edge the kernels handle: M and N not multiples of the tiles (GEMM
64x64, GEMV 128-row blocks), K not a multiple of the 32-element chunk / K step, group sizes 8, 16,
32, 64 and 128, a grid-strided GEMV (fewer workgroups than row blocks), and both ramp (exact in
f16) and normal (not exact in f16) inputs. Weights are random int4 nibbles over the whole [-8, 7]
range with random per-group scales, packed with q4gsw.unpack.pack_int4.

wgpu runs in a child process (this file, run as a script): the Vulkan ICD chosen by provisioning
must be in the environment before wgpu loads, and other tests in this process may use SwiftShader.
Kernel files, dispatch expressions and required features come from matrix.toml, so the test checks
what the matrix declares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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

KERNEL_SHAPES = {"gpu_gemv": GEMV_SHAPES, "gpu_gemv_rows": GEMV_SHAPES, "gpu_gemv_fast": GEMV_SHAPES,
                 "gpu_gemm": GEMM_SHAPES, "gpu_gemm_f16": GEMM_SHAPES}


def make_case(M: int, K: int, N: int, group_size: int, input_name: str, seed: int):
    """Random int4 weights over all 16 nibbles, random positive/negative scales, and the input x."""
    from q4gsw import inputs
    from q4gsw.unpack import PackedLinear, pack_int4

    rng = np.random.default_rng([seed, M, K, N, group_size])
    q = rng.integers(-8, 8, size=(N, K))
    padded_N = N  # the kernels must use params.padded_N for the scale stride, so pad it when N allows
    if N % 16:
        padded_N = N + 8
    scales = (rng.uniform(0.2, 1.0, size=(K // group_size, padded_N)) / np.sqrt(K) / 7.5).astype(np.float32)
    scales *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=scales.shape)
    packed = PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group_size)
    x = inputs.make_input(input_name, M, K, seed)
    return x, packed


def child_main(spec: dict) -> None:
    """Run one kernel on every case of the spec; print one JSON line per case (errors and bounds)."""
    from q4gsw import gpu
    from q4gsw.golden import golden
    from q4gsw.matrix import load_matrix, split_dispatch

    matrix = load_matrix(REPO / "matrix.toml")
    kernel = next(k for k in matrix.kernels if k.name == spec["kernel"])
    adapter, info = gpu.select_adapter(matrix.backend("lavapipe"))
    session = gpu.Session(adapter, info, tuple(kernel.requires_features))
    source = kernel.path(matrix.root).read_text()
    for case in spec["cases"]:
        M, K, N, group_size, input_name = case["shape"]
        x, packed = make_case(M, K, N, group_size, input_name, seed=7)
        kernel_used = kernel
        if case.get("dispatch"):
            kernel_used = type(kernel)(**{**kernel_used.__dict__, "dispatch": split_dispatch(case["dispatch"])})
        if case.get("overrides"):
            kernel_used = type(kernel)(**{**kernel_used.__dict__,
                                          "overrides": {**kernel_used.overrides, **case["overrides"]}})
        shape = {"M": M, "K": K, "N": N, "K_packed": K // 2, "group_size": group_size}
        constants, workgroups = gpu.resolve_kernel(kernel_used, shape, info)
        run = session.run(source, kernel.name, constants, workgroups, x, packed)
        g = golden(x, packed)
        w = packed.dequantized_rows(0, N)  # fp64 [N, K]
        abs_xw = np.abs(x.astype(np.float64)) @ np.abs(w).T  # sum_k |x w| per output
        l2_xw = np.sqrt(x.astype(np.float64) ** 2 @ (w**2).T)  # ||x * w||_2 per output
        finite = bool(np.isfinite(run.output).all())
        err = np.abs(run.output.astype(np.float64) - g) if finite else np.full(g.shape, np.inf)
        print(json.dumps({"shape": case["shape"], "workgroups": list(workgroups), "finite": finite,
                          "guard_violations": len(run.guard_violations), "err": err.tolist(),
                          "g": g.tolist(), "abs_xw": abs_xw.tolist(), "l2_xw": l2_xw.tolist(),
                          "x_exact_f16": bool((x.astype(np.float16).astype(np.float32) == x).all())}), flush=True)


@pytest.fixture(scope="module")
def lavapipe_env() -> dict[str, str]:
    from q4gsw.gpu import BackendUnavailable, provision
    from q4gsw.matrix import load_matrix

    try:
        return provision(load_matrix(REPO / "matrix.toml").backend("lavapipe"))
    except BackendUnavailable as exc:
        if os.environ.get("CI"):
            raise  # CI installs lavapipe: a missing one there is a failure, not a skip
        pytest.skip(f"lavapipe unavailable: {exc}")


def run_child(kernel: str, cases: list[dict], env: dict[str, str]) -> list[dict]:
    spec = json.dumps({"kernel": kernel, "cases": cases})
    full_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), spec], capture_output=True, text=True,
                          env=full_env, timeout=300, cwd=REPO)
    stderr = "\n".join(line for line in proc.stderr.splitlines() if "XDG_RUNTIME_DIR" not in line)
    assert proc.returncode == 0, f"{kernel} child failed (exit {proc.returncode}):\n{stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def check_fp32(result: dict) -> float:
    """fp32 accumulation only: a flat bound far below one int4 step (|x| * |s| ~ 1e-3 here)."""
    err, g = np.array(result["err"]), np.array(result["g"])
    allowed = 5e-6 + 1e-5 * np.abs(g)
    return float((err / allowed).max())


def check_f16(result: dict) -> float:
    """f16 tiles: x (unless exact in f16) and q*s are each rounded once to f16 (relative <= 2^-11,
    q*s after an exact-or-rounded f32 product: 2^-11 + 2^-24), products are exact in fp32 and the
    sum is fp32. Rigorous per element: |err| <= (sources * (2^-11 + 2^-24) + K * 2^-24) * sum_k |x w|.
    Also tight in aggregate: the rounding errors are independent with std <= 2^-11 / sqrt(3) each,
    so the largest error stays below 6 standard deviations of the largest output."""
    err = np.array(result["err"])
    K = result["shape"][1]
    sources = 1 if result["x_exact_f16"] else 2
    rigorous = (sources * (F16_EPS + F32_EPS) + K * F32_EPS) * np.array(result["abs_xw"]) + 1e-30
    sigma = np.sqrt(sources / 3.0) * F16_EPS * np.array(result["l2_xw"]).max()
    return float(max((err / rigorous).max(), err.max() / (6 * sigma)))


@pytest.mark.parametrize("kernel", sorted(KERNEL_SHAPES))
def test_gpu_kernel_matches_fp64_golden(kernel: str, lavapipe_env: dict[str, str]):
    cases = [{"shape": list(shape)} for shape in KERNEL_SHAPES[kernel]]
    if kernel in ("gpu_gemv", "gpu_gemv_rows", "gpu_gemv_fast"):
        cases.append({"shape": list(GRID_STRIDE["shape"]), "dispatch": GRID_STRIDE["dispatch"]})
    if kernel == "gpu_gemv_rows":
        cases += GEMV_ROWS_EXTRA
    if kernel == "gpu_gemv_fast":
        cases += GEMV_FAST_EXTRA
    results = run_child(kernel, cases, lavapipe_env)
    assert len(results) == len(cases)
    check = check_f16 if kernel.endswith("_f16") else check_fp32
    problems = []
    for result in results:
        where = f"{kernel} M,K,N,gs,input={result['shape']} workgroups={result['workgroups']}"
        if result["guard_violations"]:
            problems.append(f"{where}: wrote outside the output ({result['guard_violations']} guard words)")
        elif not result["finite"]:
            problems.append(f"{where}: NaN/Inf in the output (an element never written?)")
        else:
            headroom = check(result)
            if headroom > 1.0:
                problems.append(f"{where}: max |err| {np.max(result['err']):.3g} exceeds the bound "
                                f"(headroom {headroom:.2f})")
    assert not problems, "\n".join(problems)


def test_matrix_declares_gpu_kernels_for_native_and_lavapipe_only():
    from q4gsw.matrix import load_matrix

    kernels = {k.name: k for k in load_matrix(REPO / "matrix.toml").kernels}
    for name in KERNEL_SHAPES:
        assert set(kernels[name].backends or ()) == {"native", "lavapipe"}, name
    assert kernels["gpu_gemm_f16"].requires_features == ("shader-f16",)
    assert kernels["gpu_gemm_f16"].tolerance is not None


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
