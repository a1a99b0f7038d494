"""Every kernel in matrix.toml, on SwiftShader, against the fp64 golden on small awkward shapes.

The kernels run in one child process (started once per module): the Vulkan loader reads
VK_ICD_FILENAMES only when wgpu first loads it, and another test module may already have loaded
wgpu in this process with other settings. The child prints one JSON line per case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "matrix.toml"

# M, N not multiples of the 8x8 output blocks (or of a workgroup's 512 columns); K with 1, 8 and
# 32 packed words per row; every group size that divides K.
MS = (1, 2, 5, 33, 70)
NS = (8, 24, 40, 136)
KS_GROUPS = ((64, 8), (64, 32), (64, 64), (72, 8), (256, 8), (256, 32), (256, 64))
CASES = [(M, K, N, gs) for i, (M, N) in enumerate((m, n) for m in MS for n in NS)
         for K, gs in (KS_GROUPS[i % len(KS_GROUPS)], KS_GROUPS[(i + 3) % len(KS_GROUPS)])]

CHILD = r"""
import json, sys
import numpy as np
from q4gsw import gpu
from q4gsw.compare import compare
from q4gsw.golden import golden
from q4gsw.matrix import LIMIT_NAMES, Config, Tolerance, evaluate, load_matrix
from q4gsw.unpack import PackedLinear, pack_int4

matrix = load_matrix(sys.argv[1])
backend = matrix.backend("swiftshader")
adapter, info = gpu.select_adapter(backend)
session = gpu.Session(adapter, info, tuple(sorted({f for k in matrix.kernels for f in k.requires_features})))
tolerance = Tolerance(atol=1e-5, rtol=1e-4, justification="kernel test")
rng = np.random.default_rng(1)
for M, K, N, gs in json.loads(sys.argv[2]):
    q = rng.integers(-8, 8, size=(N, K))
    scales = (rng.random((K // gs, N), dtype=np.float32) * 0.01).astype(np.float32)
    packed = PackedLinear(pack_int4(q), scales, gs)
    x = rng.standard_normal((M, K), dtype=np.float32)
    g = golden(x, packed)
    config = Config(f"{M}x{K}x{N}", M, K, N, gs, "required", "test", ("normal",), "random", 0, 60.0, tolerance)
    shape = config.shape_names()
    for kernel in matrix.kernels:
        # Every kernel whose `when` holds, whatever backends it is meant for: it must be exact anywhere.
        names = {**shape, **{s: 1 << 30 for s in LIMIT_NAMES}}
        for name, value in kernel.overrides.items():
            names[name] = evaluate(value, names) if isinstance(value, str) else value
        if not evaluate(kernel.when, names):
            continue
        case = {"kernel": kernel.name, "shape": [M, K, N, gs]}
        try:
            constants, counts = gpu.resolve_kernel(kernel, shape, info)
            run = session.run(kernel.path(matrix.root).read_text(), kernel.name, constants, counts, x, packed)
            result = compare(run.output, g, tolerance)
            case.update(passed=result.passed and not run.guard_violations, message=result.message,
                        guard_violations=len(run.guard_violations))
        except gpu.KernelUnsupported as exc:
            case.update(passed=None, message=str(exc))
        print("CASE " + json.dumps(case), flush=True)
"""


@pytest.fixture(scope="module")
def kernel_results() -> dict[tuple[str, tuple[int, ...]], dict[str, Any]]:
    from q4gsw import gpu
    from q4gsw.matrix import load_matrix

    backend = load_matrix(MATRIX).backend("swiftshader")
    try:
        env = gpu.provision(backend)
    except gpu.BackendUnavailable as exc:
        pytest.skip(f"SwiftShader cannot be provisioned here: {exc}")
    child_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(MATRIX), json.dumps(CASES)], cwd=ROOT, env=child_env,
                          capture_output=True, text=True, timeout=300)
    cases = [json.loads(line[5:]) for line in proc.stdout.splitlines() if line.startswith("CASE ")]
    if "BackendUnavailable" in proc.stderr and not cases:
        pytest.skip(f"no SwiftShader adapter: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"kernel child process failed:\n{proc.stderr[-4000:]}"
    return {(c["kernel"], tuple(c["shape"])): c for c in cases}


def _declared_kernels() -> list[str]:
    from q4gsw.matrix import load_matrix

    return [k.name for k in load_matrix(MATRIX).kernels]


def test_every_shape_has_a_kernel(kernel_results: dict[tuple[str, tuple[int, ...]], dict[str, Any]]) -> None:
    covered = {shape for _, shape in kernel_results}
    assert covered == {tuple(c) for c in CASES}, "some shapes matched no kernel's `when`"


@pytest.mark.parametrize("kernel", _declared_kernels())
def test_kernel_matches_golden(kernel: str, kernel_results: dict[tuple[str, tuple[int, ...]], dict[str, Any]]) -> None:
    mine = {shape: case for (name, shape), case in kernel_results.items() if name == kernel}
    if not mine:
        pytest.skip(f"kernel '{kernel}' applies to none of the test shapes")
    failures = [f"M,K,N,gs={shape}: {case['message']} (guard violations {case.get('guard_violations', 0)})"
                for shape, case in sorted(mine.items()) if case["passed"] is False]
    unsupported = [case["message"] for case in mine.values() if case["passed"] is None]
    assert not failures, f"{kernel}: {len(failures)}/{len(mine)} shapes wrong:\n" + "\n".join(failures)
    if unsupported and len(unsupported) == len(mine):
        pytest.skip(f"{kernel} unsupported on SwiftShader: {unsupported[0]}")


def test_cpu_kernels_run_on_swiftshader(kernel_results: dict[tuple[str, tuple[int, ...]], dict[str, Any]]) -> None:
    """The subgroup kernels meant for CPU adapters must really run (not skip as unsupported) on SwiftShader."""
    from q4gsw.matrix import load_matrix

    cpu = [k.name for k in load_matrix(MATRIX).kernels
           if k.backends is not None and "swiftshader" in k.backends and k.requires_features]
    for name in cpu:
        mine = [case for (kernel, _), case in kernel_results.items() if kernel == name]
        assert mine, f"{name}: no test shape ran"
        assert all(case["passed"] is not None for case in mine), f"{name}: {mine[0]['message']}"
