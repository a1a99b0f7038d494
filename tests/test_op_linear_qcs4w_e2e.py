"""Op linear_qcs4w end to end: the real export against ExecuTorch's own test helper (its quantizer's tensors, its
fp32 golden), the reference kernel on SwiftShader on awkward shapes (odd K included, which only the export
refuses), and the mutation self-test killing every mutant with no false alarm."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, make_config, require_backend, run_cases, write_fixture
from test_op_linear_qcs4w import qcs4w_config, random_constants

from q4gsw.cases import Case
from q4gsw.matrix.load import Tolerance, load_matrix
from q4gsw.ops import op_for
from q4gsw.ops.error_model import gamma
from q4gsw.ops.inputs import make_input
from q4gsw.ops.linear_qcs4w import LinearQcs4w
from q4gsw.ops.linear_qcs4w.layout import Qcs4wLinear, pack_qcs4w

pytestmark = pytest.mark.e2e
OP = LinearQcs4w()


def _wheel_module(K: int, N: int, M: int, seed: int):
    helper = pytest.importorskip("executorch.backends.webgpu.test.ops.test_linear_qcs4w")
    return helper.make_qcs4w_linear_module(K, N, M, bias=False, seed=seed)


@pytest.mark.parametrize("M, K, N, seed", [(4, 32, 16, 0), (3, 98, 12, 7), (2, 2048, 64, 1)])
def test_export_is_the_wheel_helpers_fixture_and_our_golden_is_its_golden(M: int, K: int, N: int, seed: int):
    """The .pte's constants are the wheel helper's quantizer tensors, packed; the dequantized weights are bit for
    bit the converted module's; its fp32 output (ExecuTorch's golden) is within fp32 GEMM rounding of our fp64
    golden: |y32 - y| <= gamma_K * sum_k |x w| (Higham), whatever order its BLAS sums in. Not 1 ulp: outputs
    that cancel (|y| << sum|x w|) carry many ulps of absolute error, as any fp32 kernel's do."""
    import torch

    from q4gsw.ops.linear_qcs4w.recipe import converted_module, quantizer_tensors

    config = dataclasses.replace(qcs4w_config(M, K, N), weight_seed=seed)
    wheel = _wheel_module(K, N, M, seed)
    theirs, ours = quantizer_tensors(wheel), quantizer_tensors(converted_module(K, N, M, seed))
    assert np.array_equal(theirs.qdata, ours.qdata) and np.array_equal(theirs.scales, ours.scales)
    assert theirs.qdata.min() == -8 and theirs.qdata.max() == 7  # every nibble extreme occurs

    exported = OP.export(config, progress=lambda _: None)
    constants = exported.constants
    assert exported.cross_checked and OP.check_constants(constants, config) == ""
    assert np.array_equal(constants.weight_packed, pack_qcs4w(theirs.qdata))
    assert np.array_equal(constants.scales, theirs.scales)
    assert np.array_equal(OP.constants_from_pte(exported.pte).weight_packed, constants.weight_packed)

    dequantized = torch.ops.quantized_decomposed.dequantize_per_channel(
        torch.from_numpy(theirs.qdata), torch.from_numpy(theirs.scales), torch.from_numpy(theirs.zero_points),
        0, -8, 7, torch.int8).numpy()
    assert np.array_equal(dequantized, constants.dequantized_rows(0, N).astype(np.float32))

    for name in ("ramp", "normal"):
        x = make_input(name, M, K, seed)
        y32 = wheel(torch.from_numpy(x)).detach().numpy().astype(np.float64)
        golden = OP.golden(x, constants)
        bound = gamma(K) * (np.abs(x).astype(np.float64) @ np.abs(constants.dequantized_rows(0, N)).T)
        assert np.all(np.abs(y32 - golden) <= bound), (name, np.max(np.abs(y32 - golden) / bound))


def test_a_bad_pte_is_refused_with_the_reason():
    from q4gsw.export.pte import DelegateLayoutError

    # A linear_q4gsw .pte: its delegate runs another operator, whose arguments mean something else.
    pte = op_for("linear_q4gsw").export(make_config("o", 1, 32, 8, 32, weights="torch_linear"), lambda _: None).pte
    with pytest.raises(DelegateLayoutError, match=r"expected \['et_vk\.linear_qcs4w"):
        OP.constants_from_pte(pte)


# ---- the reference kernel on SwiftShader -----------------------------------------------------------------------

SHAPES = [(1, 32, 16), (4, 32, 16), (5, 64, 6), (7, 100, 10), (3, 98, 12), (6, 33, 8), (9, 7, 4), (70, 1000, 138)]
TOLERANCE = Tolerance(atol=3e-6, rtol=1e-5, justification="K <= 1000, |x| ~ 1, |w| ~ 0.1: fp32 error < 1e-6")


def test_reference_kernel_matches_the_golden_on_awkward_shapes_odd_k_included(tmp_path: Path, swiftshader_env):
    """Odd K (33, 7) is refused by the export, not by the host or the kernel: the padding nibble must be skipped."""
    matrix = load_matrix(REPO / "matrix.toml")
    backend = matrix.backend("swiftshader")
    kernel = next(k for k in matrix.kernels if k.name == "qcs4w_reference")
    cases = []
    for M, K, N in SHAPES:
        config = dataclasses.replace(qcs4w_config(M, K, N, inputs=("normal",)), tolerance=TOLERANCE)
        _, constants = random_constants(N, K, seed=M * K * N)
        write_fixture(tmp_path / "fixtures", config, constants)
        cases.append(Case(config=config, kernel=kernel, input="normal", backend=backend, tolerance=TOLERANCE))
    results = run_cases(cases, tmp_path / "fixtures", tmp_path / "cache")
    require_backend(results)
    assert len(results) == len(SHAPES)
    failures = {r.config: r.message for r in results.values() if r.status != "pass"}
    assert failures == {}
    assert all(r.errors.elements == r.shape.dims["M"] * r.shape.dims["N"] and r.errors.guard_violations == 0
               for r in results.values())


# ---- mutation self-test ----------------------------------------------------------------------------------------

TINY = '''schema_version = 1

[backend.swiftshader]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"

[kernel.qcs4w_reference]
op = "linear_qcs4w"
file = "{reference}"
when = "1"
dispatch = "ceil(N / wg_size), M"
overrides = {{ wg_size = 64 }}
{configs}'''
TINY_CONFIG = '''
[[config]]
name = "{name}"
op = "linear_qcs4w"
M = {M}
K = {K}
N = {N}
group_size = {K}
tier = "required"
inputs = ["ramp", "normal"]
tolerance = {{ atol = 3e-6, rtol = 1e-5, justification = "K <= 100: fp32 error < 1e-6" }}
'''
TINY_SHAPES = {"t_n6": (5, 64, 6), "t_k100": (7, 100, 10), "t_odd_rows": (3, 98, 12)}


def test_every_mutant_is_killed_and_the_reference_passes(tmp_path: Path, swiftshader_env):
    from conftest import run_cli

    reference = REPO / "q4gsw" / "ops" / "linear_qcs4w" / "kernels" / "qcs4w_reference.wgsl"
    configs = "".join(TINY_CONFIG.format(name=n, M=M, K=K, N=N) for n, (M, K, N) in TINY_SHAPES.items())
    path = tmp_path / "matrix.toml"
    path.write_text(TINY.format(reference=reference, configs=configs))
    matrix = load_matrix(path)
    for name, (M, K, N) in TINY_SHAPES.items():
        rng = np.random.default_rng(M * K)
        scales = (rng.uniform(0.5, 2.0, N) / (7.5 * np.sqrt(K))).astype(np.float32)
        constants = Qcs4wLinear(pack_qcs4w(rng.integers(-8, 8, (N, K))), scales, K)
        write_fixture(tmp_path / "fixtures", matrix.config(name), constants)
    proc = run_cli("mutants", "--op", OP.name, "--matrix", str(path), "--fixtures", str(tmp_path / "fixtures"),
                   "--results", str(tmp_path / "out"), timeout=600)
    payload = json.loads((tmp_path / "out" / "mutants.json").read_text())
    summary = payload["summary"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert summary["survivors"] == [] and summary["killed"] == len(OP.mutation_suite().mutants)
    assert payload["false_alarms"] == [] and payload["errors"] == [] and payload["problems"] == []
    killed_by = summary["killed_by"]
    # Shape-specific bugs die only where the shape exposes them.
    assert {c.split("/")[0] for c in killed_by["last_tile_overhang_written"]} <= {"t_n6", "t_k100"}  # N % 4 != 0
    assert {c.split("/")[0] for c in killed_by["row_stride_words"]} == {"t_k100", "t_odd_rows"}  # K_packed % 4 != 0
    assert {c.split("/")[0] for c in killed_by["k_tail_dropped"]} == {"t_k100", "t_odd_rows"}  # K % 8 != 0
