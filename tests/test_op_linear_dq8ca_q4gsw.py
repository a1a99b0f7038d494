"""Op linear_dq8ca_q4gsw (q4gsw/ops/linear_dq8ca_q4gsw/): torchao's per-row qparams, the golden, the error model,
inputs, bindings, mutants (offline); the real export, the wheel helper's golden, the reference kernels, the
mutants and ExecuTorch's kernels on SwiftShader (e2e)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from q4gsw.cases import kernel_from_plain, to_plain
from q4gsw.matrix.load import load_matrix, make_kernel
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import op_for
from q4gsw.ops.linear_dq8ca_q4gsw.golden import golden
from q4gsw.ops.linear_dq8ca_q4gsw.inputs import flat_rows, row_offsets, tiny_rows
from q4gsw.ops.linear_dq8ca_q4gsw.qparams import (
    EPS,
    RowQparams,
    choose_qparams,
    executorch_qparams,
    op_codes,
    torchao_codes,
)
from q4gsw.ops.linear_dq8ca_q4gsw.rounding import code_deviation, dq8ca_error_model, flip_bound
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4

REPO = Path(__file__).resolve().parent.parent
OP = "linear_dq8ca_q4gsw"
op = op_for(OP)


def config(M: int, K: int, N: int, group_size: int = 32, **fields: object) -> Config:
    return Config(name="t", dims={"M": M, "K": K, "N": N, "group_size": group_size}, tier="required",
                  suite="dq8ca-edges",
                  inputs=("normal",), weights="torch_linear", weight_seed=0, timeout_s=60,
                  tolerance=Tolerance(1e-5, 1e-4), op=OP, **fields)  # type: ignore[arg-type]


def random_packed(N: int, K: int, group_size: int, seed: int = 0) -> PackedLinear:
    rng = np.random.default_rng(seed)
    q = rng.integers(-8, 8, size=(N, K))
    scales = rng.uniform(0.01, 0.05, size=(K // group_size, N)).astype(np.float32)
    return PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group_size)


# ------------------------------------------------------------------------------------------------
# torchao's qparams
# ------------------------------------------------------------------------------------------------


def test_qparams_of_a_symmetric_row_and_its_codes():
    # range [-0.5, 0.5]: scale = fl(1 / 255) (slightly above 1/255), -0.5 / scale = -127.49999 rounds to -127,
    # so zp = -128 + 127 = -1; the extremes quantize to -128 and 126, i.e. codes -127 and 127.
    qparams = choose_qparams(np.array([[-0.5, 0.25, 0.5, 0.0]], dtype=np.float32))
    assert qparams.scale.tolist() == [np.float32(np.float32(1.0) / np.float32(255.0))]
    assert qparams.zero_point.tolist() == [-1]
    assert op_codes(np.array([[-0.5, 0.25, 0.5, 0.0]], np.float32), qparams).tolist() == [[-127, 64, 127, 0]]


def test_degenerate_rows_follow_torchao():
    x = np.array([[0.0] * 4, [2.0] * 4, [-3.0] * 4], dtype=np.float32)
    qparams = choose_qparams(x)
    assert qparams.scale[0] == EPS == np.float32(2.0**-126)  # all zero: scale clamped to eps, zp = -128
    assert qparams.zero_point.tolist() == [-128, -128, 127]  # [0, c]: zp = qmin; [c, 0]: zp = qmax
    assert op_codes(x, qparams)[:, 0].tolist() == [0, 255, -255]


def tie_rows() -> np.ndarray:
    """Rows whose min / scale is exactly a .5 tie: [t * 2^-e, 0, (t + 255) * 2^-e] has scale 2^-e (exact) and
    min / scale = t for every t in -127.5 .. -0.5 (odd and even neighbours alike); plus rows whose max is the
    tie side ([0, c]) and the degenerate rows."""
    rows = [[t * 2.0**-e, 0.0, (t + 255) * 2.0**-e] for e in (0, 3, 9) for t in np.arange(-127.5, 0, 1.0)]
    rows += [[0.0, 0.0, 0.0], [0.0, 1.0, 2.5], [-2.5, -1.0, 0.0], [-126.5, 0.0, 128.5]]
    return np.array(rows, dtype=np.float32)


@pytest.mark.e2e  # imports torch and torchao
def test_qparams_equal_torchaos_choose_qparams_affine_on_ties_and_random_rows():
    """torchao's own choose_qparams_affine and quantize_affine (the 8da4w activation path), not a transcription:
    scale and zero point bit for bit, and its codes, on rows built to land on .5 ties, where rounding half away
    from zero instead of half to even moves the zero point (row [-126.5, 0, 128.5]: torchao's zp is -2)."""
    torch = pytest.importorskip("torch")
    quant = pytest.importorskip("torchao.quantization.quant_primitives")
    x = np.concatenate([tie_rows(), (np.random.default_rng(3).standard_normal((64, 48)) * 4)[:, :3]
                        .astype(np.float32)])
    theirs_scale, theirs_zp = quant.choose_qparams_affine(
        torch.from_numpy(x), quant.MappingType.ASYMMETRIC, [1, x.shape[1]], torch.int8, -128, 127, eps=None,
        zero_point_dtype=torch.int8)
    ours = choose_qparams(x)
    assert ours.scale.tobytes() == theirs_scale.reshape(-1).numpy().tobytes()
    assert ours.zero_point.tolist() == theirs_zp.reshape(-1).tolist()
    assert ours.zero_point[len(tie_rows()) - 1] == -2  # the row: -128 - round_half_even(-126.5)
    xq = quant.quantize_affine(torch.from_numpy(x), [1, x.shape[1]], theirs_scale, theirs_zp, torch.int8, -128, 127)
    centered = xq.numpy().astype(np.float64) - theirs_zp.numpy().astype(np.float64).reshape(-1, 1)
    assert np.array_equal(torchao_codes(x, ours), centered)


def test_zero_points_pack_four_per_word_little_endian():
    qparams = RowQparams(scale=np.ones(5, np.float32), zero_point=np.array([-1, 2, -128, 127, 5], np.int8))
    assert qparams.zero_point_words().tolist() == [0x7F8002FF, 0x00000005]


def test_torchao_codes_round_the_reciprocal_product():
    """torchao multiplies by fl(1 / s); the op's meaning divides exactly: they differ only next to a .5 tie."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((64, 256)) * 3).astype(np.float32)
    qparams = choose_qparams(x)
    assert np.array_equal(torchao_codes(x, qparams), op_codes(x, qparams))


def test_executorch_qparams_raise_small_scales():
    """ExecuTorch's choose_qparams_affine.wgsl (replayed): rows whose torchao scale is below 6.1e-5 get 6.1e-5;
    other rows keep torchao's scale, and their codes are the same even where the zero point differs."""
    x = tiny_rows(6, 128, 0)
    assert (choose_qparams(x).scale < 6.1e-5).all()
    assert (executorch_qparams(x).scale == np.float32(6.1e-5)).all()
    x = row_offsets(8, 128, 0)
    torchao, executorch = choose_qparams(x), executorch_qparams(x)
    assert np.array_equal(torchao.scale, executorch.scale)
    assert np.array_equal(op_codes(x, torchao), op_codes(x, executorch))


# ------------------------------------------------------------------------------------------------
# Golden and error model
# ------------------------------------------------------------------------------------------------


def test_golden_is_the_exact_scaled_code_dot_product():
    rng = np.random.default_rng(11)
    M, K, N, group = 3, 32, 5, 8
    packed = random_packed(N, K, group, 11)
    x = rng.standard_normal((M, K)).astype(np.float32)
    qparams = choose_qparams(x)
    w = packed.dequantized_rows(0, N)
    expected = np.empty((M, N))
    for m in range(M):
        t = [float(x[m, k]) / float(qparams.scale[m]) for k in range(K)]
        z = int(qparams.zero_point[m])
        codes = [min(max(round(v) + z, -128), 127) - z for v in t]  # Python's round is half to even too
        for n in range(N):
            expected[m, n] = float(qparams.scale[m]) * math.fsum(c * float(w[n, k]) for k, c in enumerate(codes))
    assert np.allclose(golden(x, packed), expected, rtol=1e-15, atol=0)


def test_a_near_tie_may_flip_and_equal_values_flip_together():
    # s = fl(1/255), zp = -1: 0.5 / s = 127.4999925 is 1 fp32 ulp from the tie 127.5, inside the 3-ulp window, and
    # a kernel rounding it up codes 128 - 1 = 127 -> 128 instead of 127; -0.5 / s rounded down would code -129,
    # clamped to -128: the same code, so no deviation; 0.25 / s = 63.75 is far from any tie.
    x = np.array([[-0.5, 0.5, 0.25, 0.5]], dtype=np.float32)
    qparams = choose_qparams(x)
    deviation = code_deviation(x, qparams, chained=False)
    assert deviation.tolist() == [[0, 1, 0, 1]]
    packed = PackedLinear(weight_packed=pack_int4(np.array([[3, 5, 7, -2], [1, 1, 1, 1]])),
                          scales=np.array([[1.0, 1.0]], np.float32), group_size=4)
    flips = flip_bound(x, packed, qparams, deviation)
    s = float(qparams.scale[0])
    assert np.allclose(flips, [[s * abs(5 - 2), s * abs(1 + 1)]])  # |sum of w over the 0.5 elements|, not sum|w|


def test_even_a_correctly_rounded_quotient_can_cross_a_tie():
    """Why the tie window exists: fl(-9.85) / fl(0.1) = -98.5000023 exactly, so the op's code is -99; the
    correctly rounded fp32 quotient is -98.5 itself, which rounds to even, -98 (lavapipe does this on q_proj_4k)."""
    x = np.array([[np.float32(-9.85), np.float32(1.0)]], dtype=np.float32)
    qparams = RowQparams(scale=np.array([0.1], np.float32), zero_point=np.array([0], np.int8))
    fp32_quotient = (x / qparams.scale[:, None]).astype(np.float32)
    assert op_codes(x, qparams)[0, 0] == -99 and np.round(fp32_quotient[0, 0]) == -98
    assert code_deviation(x, qparams, chained=False).tolist() == [[1, 0]]


def test_chained_qparams_admit_the_other_zero_point_at_the_clamp_boundary():
    x = np.array([[-0.5, 0.5, 0.25, -0.5]], dtype=np.float32)
    qparams = choose_qparams(x)
    # -128 - (-0.5 / s) = -0.5000075: within the zero-point window of a tie, so zp may be 0 (ExecuTorch picks it);
    # then 0.5 codes to 127 - 0 = 127 either way, and -0.5 to -127 or -128: still one step.
    assert code_deviation(x, qparams, chained=True).max() == 1


def test_the_tie_window_is_three_ulps_and_a_chained_scale_widens_it_by_6u_t():
    # [-100, 155]: scale 255 / 255 = 1 exactly and zp -28, so x / s = x. Between 32 and 64 an fp32 ulp is 2^-18:
    # 50.5 + 2 ulp lies inside TIE_ULPS = 3 ulp of the tie 50.5, 50.5 + 10 ulp outside (a 30-ulp window would
    # take it), and 50.5 + 6 ulp only inside the chained window, 3 ulp + 6u * 50.5 = 3 + 4.7 ulp.
    ulp = 2.0**-18
    x = np.array([[-100.0, 155.0, 50.5 + 2 * ulp, 50.5 + 10 * ulp, 50.5 + 6 * ulp, 20.25]], dtype=np.float32)
    qparams = choose_qparams(x)
    assert qparams.scale.tolist() == [1.0] and qparams.zero_point.tolist() == [-28]
    assert code_deviation(x, qparams, chained=False).tolist() == [[0, 0, 1, 0, 0, 0]]
    assert code_deviation(x, qparams, chained=True).tolist() == [[0, 0, 1, 0, 1, 0]]


def hand_model_case() -> tuple[np.ndarray, PackedLinear]:
    """x / s is an integer everywhere (s = 1, zp = -28, no tie anywhere): the codes are x itself; w = q * scale."""
    x = np.array([[-100.0, 155.0, 10.0, 20.0]], dtype=np.float32)
    packed = PackedLinear(weight_packed=pack_int4(np.array([[1, -2, 3, 1], [2, 1, -1, -3]])),
                          scales=np.array([[0.5, 0.25]], np.float32), group_size=4)
    return x, packed


def test_error_model_terms_on_a_hand_computed_case():
    """Codes [-100, 155, 10, 20] times w [0.5, -1, 1.5, 0.5] and [0.5, 0.25, -0.25, -0.75]: S = 230 and 106.25,
    y = -180 and -28.75. Four products, three additions and the final multiply by s: K + 1 = 5 roundings on each
    term, so worst = gamma_{K+2} S (ErrorModel's gamma_{K+1} of K + 1 terms); a chained (GPU-computed) scale adds
    6u |y|; no x / s and no zero point is near a tie, so there are no flips."""
    from q4gsw.ops.error_model import U, gamma

    x, packed = hand_model_case()
    S, y = np.array([[230.0, 106.25]]), np.array([[-180.0, -28.75]])
    assert golden(x, packed).tolist() == y.tolist()
    exact, chained = dq8ca_error_model(x, packed, chained=False), dq8ca_error_model(x, packed, chained=True)
    for model in (exact, chained):
        assert model.K == 5 and model.S.tolist() == S.tolist() and model.flips.tolist() == [[0.0, 0.0]]
        assert model.step.tolist() == [[155 * 0.5, 155 * 0.25]]  # max |code| * the weight scale, times s = 1
    assert exact.scaled.tolist() == [[0.0, 0.0]]
    np.testing.assert_allclose(exact.worst, gamma(6) * S, rtol=1e-14, atol=0)
    np.testing.assert_allclose(chained.scaled, 6 * U * np.abs(y), rtol=1e-14, atol=0)
    np.testing.assert_allclose(chained.worst, gamma(6) * S + 6 * U * np.abs(y), rtol=1e-14, atol=0)
    # The sequential estimate: t = [-50, -155, 15, 10], partial sums [-50, -205, -190, -180] for output 0.
    sigma0 = U / math.sqrt(3) * math.sqrt(50**2 + 205**2 + 190**2 + 180**2 + 2 * (50**2 + 155**2 + 15**2 + 10**2))
    np.testing.assert_allclose(chained.est[0, 0], math.sqrt(2 * math.log(2)) * sigma0 + 6 * U * 180, rtol=1e-12)


def test_error_model_adds_the_flip_bound_to_the_fp32_model():
    packed = random_packed(16, 64, 32, 3)
    x = np.tile(np.array([-0.5, 0.5, 0.25, 0.125], np.float32), (2, 16))
    model = dq8ca_error_model(x, packed)
    assert model.flips is not None and (model.flips > 0).all()
    assert np.all(model.est >= model.flips) and np.all(model.worst >= model.flips)
    assert model.S.shape == model.step.shape == (2, 16)


# ------------------------------------------------------------------------------------------------
# Inputs, shapes, bindings
# ------------------------------------------------------------------------------------------------


def test_inputs_are_reproducible_and_exercise_the_row_paths():
    assert np.array_equal(op.make_input("row_offsets", config(8, 64, 8)), row_offsets(8, 64, 0))
    zero_points = choose_qparams(row_offsets(16, 256, 0)).zero_point
    assert -128 in zero_points and 127 in zero_points and len(set(zero_points.tolist())) >= 6
    flat = flat_rows(8, 32, 0)
    assert (flat == flat[:, :1]).all() and (flat[:, 0] == 0).any() and (np.abs(flat[:, 0]) >= 255 * 6.1e-5).any()
    tiny = tiny_rows(6, 64, 0)
    assert ((tiny.max(axis=1) - np.minimum(tiny.min(axis=1), 0)) < 255 * 6.1e-5).all()
    ramp = op.make_input("ramp", config(2, 64, 8))  # q4gsw's ramp: ((i % 17) - 8) / 16 over the flattened input
    assert ramp.dtype == np.float32 and ramp.ravel().tolist() == [((i % 17) - 8) / 16 for i in range(2 * 64)]


def test_untied_rows_hold_no_tie_where_normal_ones_do():
    """`untied` (the prefill configs' and bench's input): no x / s, no row extreme within UNTIED_MARGIN of a .5
    tie, so the model admits no flip even for chained qparams; `normal` of the same shape has rows that flip."""
    from q4gsw.ops.inputs import normal
    from q4gsw.ops.linear_dq8ca_q4gsw.inputs import UNTIED_MARGIN, untied

    x = untied(64, 2048, 0)
    assert x.dtype == np.float32 and code_deviation(x, choose_qparams(x), chained=True).max() == 0
    t = x.astype(np.float64) / choose_qparams(x).scale.astype(np.float64)[:, None]
    assert np.abs(t - (np.floor(t) + 0.5)).min() >= UNTIED_MARGIN
    plain = normal(64, 2048, 0)
    assert (code_deviation(plain, choose_qparams(plain), chained=True).max(axis=1) > 0).sum() >= 3
    assert np.abs(x).max() > 3 and abs(float(x.std()) - 1) < 0.01  # still standard normal rows


def nibble_sharp(x: np.ndarray, tolerance: Tolerance, outputs: int) -> tuple[float, float]:
    """(max est / T, median step / T) of the model on x with synthetic torch_linear-like weights (64 columns), the
    fp32 estimate grown from these outputs to `outputs` as audit's grows (sqrt(2 ln(outputs))); the chained scale's
    term (relative, 6u |y|) does not grow."""
    packed = op._weights.synthetic_constants(config(x.shape[0], x.shape[1], 64), 0)
    model = dq8ca_error_model(x, packed)
    T = tolerance.atol + tolerance.rtol * np.abs(golden(x, packed))
    grow = math.sqrt(math.log(outputs) / math.log(model.outputs))
    est = (model.est - model.scaled) * grow + model.scaled
    return float((est / T).max()), float(np.median(model.step / T))


def test_the_bench_bound_is_the_models_and_sees_one_nibble():
    """bench's sanity bound keeps audit's 3x over the model's estimate and a one-nibble step >= 10x outside it
    (the flat 5e-3 it replaced was 2x)."""
    for K in (256, 2048):
        x = op.make_input(op.synthetic_input, config(64, K, 64))
        est_over_tol, step_over_tol = nibble_sharp(x, op.bench_tolerance(config(64, K, 64).dims), 2**36)
        assert est_over_tol <= 1 / 3 and step_over_tol >= 10, (K, est_over_tol, step_over_tol)


def test_the_prefill_configs_see_one_nibble():
    """dq8ca_prefill_kv_64, dq8ca_q_proj_4k and _8k on their `untied` input: 3x over the model's estimate (their
    own outputs), and a one-nibble step >= 10x their tolerance (on `normal` they admitted tie flips: 2-3x)."""
    matrix = load_matrix(REPO / "matrix.toml")
    for name in ("dq8ca_prefill_kv_64", "dq8ca_q_proj_4k", "dq8ca_q_proj_8k"):
        c = matrix.config(name)
        assert c.inputs == ("untied",), name
        M, N = c.dims["M"], c.dims["N"]
        x = op.make_input("untied", dataclasses.replace(c, dims={**c.dims, "M": min(M, 64)}))
        est_over_tol, step_over_tol = nibble_sharp(x, c.tolerance, M * N)
        assert est_over_tol <= 1 / 3 and step_over_tol >= 10, (name, est_over_tol, step_over_tol)


def test_shape_problems_are_the_packings():
    assert [p.key for p in op.shape_problems(config(1, 100, 8))] == ["K", "K"]
    assert [p.key for p in op.shape_problems(config(1, 64, 12))] == ["N"]
    assert op.shape_problems(config(6, 64, 16)) == []


def test_bindings_follow_executorchs_layout():
    x = row_offsets(6, 64, 0)
    packed = random_packed(16, 64, 32)
    exact = op.bindings(x, packed)
    assert exact.output_index == 0 and exact.output_shape == (6, 16)
    assert [b.index for b in exact.inputs] == [1, 2, 3, 4, 5, 6, 7]
    by_index = {b.index: b for b in exact.inputs}
    assert np.array_equal(by_index[2].data, choose_qparams(x).scale)
    assert by_index[3].data.dtype == np.uint32 and by_index[3].data.size == 2
    assert by_index[6].data.nbytes == 4 and by_index[7].kind == "uniform"
    assert by_index[7].data.tolist() == [6, 16, 64, 32, 32, 16, 0, 0]
    chained = {b.index: b for b in op.bindings(x, packed, chained=True).inputs}
    before = op.before_bindings(x, packed)
    assert before.output_index is None
    writes = {b.shared: b for b in before.inputs if b.kind == "storage"}
    assert set(writes) == {"input_scale", "input_zp"}
    assert chained[2].shared == "input_scale" and chained[3].shared == "input_zp"
    assert chained[2].data.nbytes == writes["input_scale"].data.nbytes == 6 * 4
    assert chained[3].data.nbytes == writes["input_zp"].data.nbytes == 2 * 4
    assert before.inputs[-1].data.tolist() == [6, 64, -128, 127]


def test_kernels_with_a_before_survive_the_trip_to_the_child():
    first = make_kernel("q", "q.wgsl", "ceil(M / 4)", op=OP)
    kernel = make_kernel("k", "k.wgsl", "ceil(N / wg_size), M", overrides={"wg_size": "64"}, op=OP, before=first)
    assert kernel_from_plain(json.loads(json.dumps(to_plain(kernel)))) == kernel


def test_matrix_declares_the_reference_chain_and_executorchs():
    matrix = load_matrix(REPO / "matrix.toml")
    kernels = {k.name: k for k in matrix.kernels if k.op == OP}
    assert kernels["dq8ca_ref"].before is None
    assert kernels["dq8ca_ref_chained"].before is not None
    assert kernels["dq8ca_ref_chained"].before.file.endswith("choose_qparams_reference.wgsl")
    spec = matrix.kernel_sets["executorch_dq8ca"]
    assert spec.route == ("linear_dq8ca_q4gsw",)
    routed = next(k for k in spec.kernels if k.name == "linear_dq8ca_q4gsw")
    assert routed.before is not None and routed.before.file == "../choose_qparams_affine/choose_qparams_affine.wgsl"
    suites = {c.suite for c in matrix.configs if c.op == OP}
    assert suites == {"dq8ca-llama", "dq8ca-edges"}
    assert all("TBD" not in c.tolerance.justification for c in matrix.configs if c.op == OP)


# ------------------------------------------------------------------------------------------------
# Mutants
# ------------------------------------------------------------------------------------------------


def test_every_mutant_edits_its_kernel():
    from q4gsw.commands.mutants import mutant_kernels, mutant_sources

    suite = op.mutation_suite()
    assert suite is not None and suite.before is not None
    sources = mutant_sources(op_name=OP)
    reference, first = suite.reference.read_text(), suite.before.file.read_text()
    for mutant in suite.mutants:
        assert sources[mutant.name] != (first if mutant.in_before else reference), mutant.name
    kernels = {k.name: k for k in mutant_kernels(op_name=OP)}
    assert all(k.before is not None for k in kernels.values())
    assert kernels["reference"].text == reference and kernels["reference"].before.text == first
    assert kernels["qp_zp_sign"].text == reference and kernels["qp_zp_sign"].before.text != first
    assert kernels["zp_sign"].text != reference and kernels["zp_sign"].before.text == first
    assert {m.in_before for m in suite.mutants} == {True, False}


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------


UPSTREAM_SHAPES = ((4, 64, 16), (1, 64, 16), (2, 128, 8), (3, 64, 32), (1, 2048, 512))


@pytest.mark.e2e
def test_export_reads_the_quantizers_tensors_from_the_delegate():
    exported = op.export(config(4, 64, 16), progress=lambda message: None)
    assert exported.cross_checked  # recipe.cross_check: nibbles and scales equal torchao's, per-token int8 acts
    assert op.constants_from_pte(exported.pte).weight_packed.tobytes() == exported.constants.weight_packed.tobytes()


@pytest.mark.e2e
@pytest.mark.parametrize("M,K,N", UPSTREAM_SHAPES)
def test_golden_equals_the_wheel_helpers_within_its_fp32_rounding(M, K, N):
    """The wheel helper's golden is the converted eager module's fp32 forward: torchao's codes (x * fl(1/s)),
    dequantized to fp32, an fp32 matmul. It differs from q4gsw's fp64 golden by (1) codes that torchao rounds to
    the other side of a tie (computed exactly here: none for these inputs) and (2) fp32 rounding of (xq - z) s
    and of the K-term dot product, <= (u + gamma_K) sum_k |xdq| |w| (Higham)."""
    torch = pytest.importorskip("torch")
    from executorch.backends.webgpu.test.ops.test_linear_dq8ca_q4gsw import make_linear_dq8ca_q4gsw_module

    from q4gsw.ops.error_model import U, gamma

    module = make_linear_dq8ca_q4gsw_module(K, N, M, group_size=32, seed=0)
    packed = PackedLinear(weight_packed=pack_int4(module.weight.qdata.numpy()),
                          scales=np.ascontiguousarray(module.weight.scale.numpy().reshape(N, -1).T), group_size=32)
    torch.manual_seed(0)
    x = torch.randn(M, K).numpy()  # the op-test framework's input (torch.manual_seed(0); randn)
    with torch.no_grad():
        theirs = module(torch.from_numpy(x)).double().numpy()
    ours = golden(x, packed)
    qparams = choose_qparams(x)
    s = qparams.scale.astype(np.float64)[:, None]
    w = packed.dequantized_rows(0, N)
    their_codes = torchao_codes(x, qparams)
    flips = np.abs(s * ((their_codes - op_codes(x, qparams)) @ w.T))
    dequantized = (their_codes.astype(np.float32) * qparams.scale[:, None]).astype(np.float64)
    bound = flips + (U + gamma(K)) * (1 + U) * (np.abs(dequantized) @ np.abs(w).T)
    assert np.all(np.abs(theirs - ours) <= bound)
    assert np.abs(theirs - ours).max() > 0  # not vacuous: fp32 rounding is there, and bounded


DIVERGENCE_CONFIGS = ("dq8ca_up_basic", "dq8ca_up_n32", "dq8ca_tiny_rows")


@pytest.mark.e2e
def test_reference_kernels_pass_on_every_row_kind(swiftshader_env, fixture_cache, tmp_path):
    args = [a for c in DIVERGENCE_CONFIGS for a in ("--config", c)]
    done = run_cli("run", "--backend", "swiftshader", *args, "--results", str(tmp_path),
                   env={**swiftshader_env, "Q4GSW_CACHE": str(fixture_cache)}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    ran = {(r["config"], r["kernel"]) for r in results if r["status"] == "pass"}
    assert {(c, k) for c in DIVERGENCE_CONFIGS for k in ("dq8ca_ref", "dq8ca_ref_chained")} <= ran


@pytest.mark.e2e
def test_executorch_diverges_on_tiny_rows_only(swiftshader_env, fixture_cache, tmp_path):
    """ExecuTorch's SMALL_SCALE_THRESHOLD: its chained kernel fails on tiny rows, its exact-qparams variant and
    every other config pass (a test of its own: without a checkout it is a skip, never half a pass)."""
    checkout = Path(os.environ.get("Q4GSW_EXECUTORCH", "/work/et-checkout"))
    if not (checkout / op.executorch_folder).is_dir():
        pytest.skip(f"no ExecuTorch checkout with {op.executorch_folder} (set Q4GSW_EXECUTORCH)")
    args = [a for c in DIVERGENCE_CONFIGS for a in ("--config", c)]
    done = run_cli("run", "--backend", "swiftshader-dawn", "--executorch", str(checkout), "--all-variants",
                   *args, "--results", str(tmp_path), env={**swiftshader_env, "Q4GSW_CACHE": str(fixture_cache)},
                   timeout=900)
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    status = {(r["config"], r["kernel"]): r["status"] for r in results if r["kernel"]}
    assert done.returncode == 1
    assert status[("dq8ca_tiny_rows", "linear_dq8ca_q4gsw")] == "fail"  # SMALL_SCALE_THRESHOLD
    assert status[("dq8ca_tiny_rows", "linear_dq8ca_q4gsw_exact_qparams")] == "pass"
    assert all(v == "pass" for (c, _), v in status.items() if c != "dq8ca_tiny_rows")


@pytest.mark.e2e
def test_audit_of_a_dq8ca_config_reproduces_its_justification(fixture_cache, tmp_path):
    """`audit` on dq8ca_up_basic's real fixture: the op's error model (rounding.py) through the audit, no flag
    (--strict), and the sequential estimate and est the justification quotes per input (2 digits) are what the
    model computes now: a change of the model's terms (the chained scale's 6u |y|, the tie window) moves them."""
    import re

    (tmp_path / "none").mkdir()
    done = run_cli("audit", "--config", "dq8ca_up_basic", "--strict", "--results", str(tmp_path / "none"),
                   "--json", str(tmp_path / "audit.json"), env={"Q4GSW_CACHE": str(fixture_cache)}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["input"]: r for r in json.loads((tmp_path / "audit.json").read_text())["rows"]}
    justification = load_matrix(REPO / "matrix.toml").config("dq8ca_up_basic").tolerance.justification
    quoted = re.findall(r"(\w+): sequential fp32 estimate ([0-9.e+-]+), [^;]*?est ([0-9.e+-]+);", justification)
    assert {name for name, _, _ in quoted} == set(rows) == {"normal", "row_offsets"}
    for name, _, est in quoted:
        assert rows[name]["flags"] == [] and rows[name]["est_max"] == pytest.approx(float(est), rel=0.05), name
        assert rows[name]["step_over_tol_median"] >= 10 and rows[name]["worst_max"] > rows[name]["est_max"]


@pytest.mark.e2e
def test_every_mutant_is_killed_without_false_alarms(swiftshader_env, fixture_cache, tmp_path):
    configs = ("dq8ca_up_basic", "dq8ca_up_n32", "dq8ca_m128_k64", "dq8ca_tiny_rows")
    args = [a for c in configs for a in ("--config", c)]
    done = run_cli("mutants", "--op", OP, "--backend", "swiftshader", *args, "--results", str(tmp_path),
                           env={**swiftshader_env, "Q4GSW_CACHE": str(fixture_cache)}, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "mutants.json").read_text())["summary"]
    assert summary["ok"] and summary["killed"] == summary["mutants"] == len(op.mutation_suite().mutants)


def test_the_zero_point_may_take_its_neighbour_only_within_the_window_of_a_tie():
    """zero_point_alternatives by hand, s = 1/64 (exact in fp32): with min = -1 - 1/128 -+ d, qmin - min / s is
    -63.5 +- 64 d; with max = 190/64 (191/64), qmax - max / s is -63 (-64) exactly. ZERO_POINT_WINDOW = 6u * 256 +
    4 * 2^-16 = 1.5e-4: 64 d = 2^-14 (6.1e-5) lies inside it, so both neighbours are reachable, 64 d = 2^-12
    (2.4e-4) outside."""
    from q4gsw.ops.linear_dq8ca_q4gsw.rounding import ZERO_POINT_WINDOW, zero_point_alternatives

    assert pytest.approx(6 * 2.0**-24 * 256 + 4 * 2.0**-16) == ZERO_POINT_WINDOW
    above_inside, above_outside = -1.0078125 - 2.0**-20, -1.0078125 - 2.0**-18  # -63.5 + 64 d: rounds to -63
    x = np.array([[above_inside, 190 / 64], [above_outside, 190 / 64]], dtype=np.float32)
    assert x[:, 0].astype(np.float64).tolist() == [above_inside, above_outside]  # exact in fp32
    qparams = RowQparams(scale=np.full(2, 1 / 64, np.float32), zero_point=np.full(2, -63, np.int8))
    assert zero_point_alternatives(x, qparams, chained=True).tolist() == [[-63, -64, -63], [-63, -63, -63]]
    assert zero_point_alternatives(x, qparams, chained=False).tolist() == [[-63] * 3] * 2  # torchao's alone
    below_inside = np.array([[-1.0078125 + 2.0**-20, 191 / 64]], dtype=np.float32)  # -63.5 - 2^-14: rounds to -64
    qparams = RowQparams(scale=np.array([1 / 64], np.float32), zero_point=np.array([-64], np.int8))
    assert zero_point_alternatives(below_inside, qparams, chained=True).tolist() == [[-64, -64, -63]]


def test_a_row_of_positive_values_takes_zero_as_its_minimum():
    """min(x, 0): for x in [0.5, 2], qmin - 0 / s = -128 exactly, qmax - 2 / s = 127 - 128 = -1 with s = 1/64; a
    zero point of -128 may move up (to -127: a candidate above it), never down."""
    from q4gsw.ops.linear_dq8ca_q4gsw.rounding import zero_point_alternatives

    x = np.array([[0.5, 2.0]], dtype=np.float32)
    qparams = RowQparams(scale=np.array([1 / 64], np.float32), zero_point=np.array([-128], np.int8))
    assert zero_point_alternatives(x, qparams, chained=True).tolist() == [[-128, -128, -127]]
    negative = np.array([[-2.0, -0.5]], dtype=np.float32)  # max(x, 0) = 0: qmax - 0 = 127; qmin + 128 = 0
    qparams = RowQparams(scale=np.array([1 / 64], np.float32), zero_point=np.array([0], np.int8))
    assert zero_point_alternatives(negative, qparams, chained=True).tolist() == [[0, 0, 1]]


def test_round_alternatives_offer_the_other_neighbour_within_the_window_inclusive():
    from q4gsw.ops.linear_dq8ca_q4gsw.rounding import _round_alternatives

    t = np.array([2.3, 2.5, 2.49, 2.51, -1.5, 3.0, 2.25, 2.2])
    rounded, other = _round_alternatives(t, np.array([0.1] * 6 + [0.25, 0.25]))
    assert rounded.tolist() == [2, 2, 2, 3, -2, 3, 2, 2]  # numpy rounds half to even
    assert other.tolist() == [2, 3, 3, 2, -1, 3, 3, 2]  # 2.25 is exactly 0.25 from the tie: inside; 2.2 is not
