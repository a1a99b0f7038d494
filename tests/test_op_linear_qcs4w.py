"""Op linear_qcs4w (q4gsw/ops/linear_qcs4w), offline: the packing (even k in the high nibble), the fp64 golden on
hand-built constants, shape rules (group_size = K), inputs, bindings, the ExecuTorch kernel set's dispatch and the
mutant catalogue. The e2e half (real export, the wheel's golden, SwiftShader) is test_op_linear_qcs4w_e2e.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from helpers import MATRIX, make_config

from q4gsw.commands import mutants
from q4gsw.matrix.expressions import resolve_kernel
from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import AdapterInfo
from q4gsw.ops import op_for
from q4gsw.ops.error_model import gamma
from q4gsw.ops.linear_qcs4w import LinearQcs4w
from q4gsw.ops.linear_qcs4w.layout import OneGroupView, Qcs4wLinear, pack_qcs4w, packed_width, unpack_qcs4w

OP = LinearQcs4w()


def qcs4w_config(M: int, K: int, N: int, group_size: int | None = None, inputs: tuple[str, ...] = ("ramp",)):
    config = make_config(f"t{M}x{K}x{N}", M, K, N, K if group_size is None else group_size, inputs,
                         weights="torch_linear")
    return dataclasses.replace(config, op=OP.name)


def random_constants(N: int, K: int, seed: int = 0) -> tuple[np.ndarray, Qcs4wLinear]:
    rng = np.random.default_rng(seed)
    q = rng.integers(-8, 8, size=(N, K))
    scales = (rng.uniform(0.5, 2.0, N) * 0.01).astype(np.float32)
    return q, Qcs4wLinear(weight_packed=pack_qcs4w(q), scales=scales, K=K)


# ---- packing ---------------------------------------------------------------------------------------------------

def test_even_k_is_the_high_nibble_and_values_are_offset_by_8():
    packed = pack_qcs4w(np.array([[-8, 7, 0, -1]]))
    assert packed.tolist() == [[0x0F, 0x87]]  # (q0 + 8) << 4 | (q1 + 8)
    assert unpack_qcs4w(packed, 4).tolist() == [[-8, 7, 0, -1]]


@pytest.mark.parametrize("K", [2, 7, 32, 98, 101])
def test_pack_unpack_round_trip_over_every_nibble(K: int):
    q, constants = random_constants(13, K, seed=K)
    assert constants.weight_packed.shape == (13, packed_width(K)) and constants.K_packed == (K + 1) // 2
    assert np.array_equal(unpack_qcs4w(constants.weight_packed, K), q)


def test_an_odd_k_is_padded_with_a_zero_element_as_executorch_pads_it():
    packed = pack_qcs4w(np.array([[1, 2, 3]]))
    assert packed.tolist() == [[(9 << 4) | 10, (11 << 4) | 8]]  # the padding element is 0: nibble 8


def test_packing_refuses_what_is_not_int4_and_a_width_that_does_not_hold_k():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_qcs4w(np.array([[8, 0]]))
    with pytest.raises(ValueError, match="do not hold K=5"):
        unpack_qcs4w(np.zeros((1, 2), np.uint8), 5)


@pytest.mark.e2e  # imports torch and executorch
def test_packing_equals_executorchs_own_prepack():
    torch = pytest.importorskip("torch")
    fuse = pytest.importorskip("executorch.backends.vulkan._passes.fuse_quantized_ops")
    for K in (32, 98, 33):
        q, _ = random_constants(8, K, seed=K)
        theirs = fuse.pack_4bit_weight_tensor(torch.from_numpy(q.astype(np.int8))).numpy()
        assert np.array_equal(pack_qcs4w(q), theirs), K


# ---- golden ----------------------------------------------------------------------------------------------------

def test_golden_on_hand_built_constants():
    # rows: q = [1, -2, 3, -8] * 0.5 and [7, 0, -1, 2] * 0.25; x = [1, 2, 3, 4]
    constants = Qcs4wLinear(weight_packed=pack_qcs4w(np.array([[1, -2, 3, -8], [7, 0, -1, 2]])),
                            scales=np.array([0.5, 0.25], np.float32), K=4)
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 1]], np.float32)
    expected = [[0.5 * (1 - 4 + 9 - 32), 0.25 * (7 + 0 - 3 + 8)], [0.5 * -8, 0.25 * 2]]
    assert OP.golden(x, constants).tolist() == expected


def test_golden_dequantizes_in_fp32_as_the_quantizer_and_kernel_do():
    scale = np.float32(0.1)  # 7 * 0.1 is not exact in fp32: the op rounds q * scale to fp32 before the product
    constants = Qcs4wLinear(weight_packed=pack_qcs4w(np.array([[7, 7]])), scales=np.array([scale]), K=2)
    y = OP.golden(np.ones((1, 2), np.float32), constants)
    assert y[0, 0] == 2 * float(np.float32(7) * scale) and y[0, 0] != 2 * 7 * float(scale)


def test_golden_is_the_dense_fp64_product_and_cpu_reference_within_fp32_rounding():
    q, constants = random_constants(24, 98, seed=3)
    x = np.random.default_rng(4).standard_normal((5, 98)).astype(np.float32)
    dense = (q.astype(np.float32) * constants.scales[:, None]).astype(np.float64)
    g = OP.golden(x, constants)
    np.testing.assert_allclose(g, x.astype(np.float64) @ dense.T, rtol=0, atol=1e-12)
    bound = gamma(98) * (np.abs(x).astype(np.float64) @ np.abs(dense).T)
    assert np.all(np.abs(OP.cpu_reference(x, constants) - g) <= bound)


def test_error_model_sees_one_group_spanning_k():
    _, constants = random_constants(6, 64, seed=5)
    view = OneGroupView(constants)
    assert view.group_size == 64 and view.scales.shape == (1, 6) and view.N == 6
    x = np.random.default_rng(6).standard_normal((3, 64)).astype(np.float32)
    model = OP.error_model(x, constants)
    np.testing.assert_allclose(model.step, np.abs(x).max(axis=1, keepdims=True) * constants.scales[None, :])


# ---- shapes, inputs, constants ---------------------------------------------------------------------------------

def test_a_per_channel_shape_has_no_problem():
    assert OP.shape_problems(qcs4w_config(1, 2048, 2048)) == []
    assert OP.shape_problems(qcs4w_config(5, 64, 6)) == []  # N * K/2 = 192 bytes: whole words
    assert OP.shape_text(qcs4w_config(1, 2048, 512).dims) == "1x2048x512 per-channel"


@pytest.mark.parametrize("shape, key, words", [
    ((1, 2048, 2048, 32), "group_size", "write group_size = 2048"),
    ((1, 33, 8, 33), "K", "odd"),
    ((1, 98, 6, 98), "N", "N * ceil(K/2) % 4 == 0"),
    ((300_000, 2048, 8, 2048), "M", "GiB"),
])
def test_shape_problems_name_the_key_and_the_fix(shape, key, words):
    problems = OP.shape_problems(qcs4w_config(*shape))
    assert [p.key for p in problems] == [key]
    assert words in problems[0].problem + problems[0].fix


def test_every_matrix_config_of_the_op_is_per_channel_and_in_its_suites():
    configs = [c for c in load_matrix(MATRIX).configs if c.op == OP.name]
    assert configs and all(c.dims["group_size"] == c.dims["K"] and c.weights == "torch_linear" for c in configs)
    assert {c.suite for c in configs} == {"qcs4w-llama", "qcs4w-edges"}
    assert {c.name for c in configs if c.tier == "required"} >= {"qcs4w_up_basic", "qcs4w_up_gemv", "qcs4w_up_k64",
                                                                 "qcs4w_up_n32"}
    assert all(c.tolerance.justification and "PROVISIONAL" not in c.tolerance.justification for c in configs)


def test_inputs_are_activations_of_the_config_shape_reproducible_with_numpy():
    """Each input against what its docstring promises, computed here: the ramp ((i % 17) - 8) / 16, the normal one
    numpy's standard_normal seeded [seed, 0x1A7E], and outliers of +-25 / +-60 in ~0.5% of small N(0, 0.1) values."""
    config = qcs4w_config(3, 98, 12, inputs=("ramp", "normal", "outliers"))
    assert set(OP.input_names) == {"ramp", "normal", "outliers"}
    x = {name: OP.make_input(name, config) for name in OP.input_names}
    assert all(v.shape == (3, 98) and v.dtype == np.float32 for v in x.values())
    assert x["ramp"].ravel().tolist() == [((i % 17) - 8) / 16 for i in range(3 * 98)]
    seed = config.weight_seed
    expected = np.random.default_rng([seed, 0x1A7E]).standard_normal((3, 98), dtype=np.float32)
    assert x["normal"].tobytes() == expected.tobytes()
    big = np.abs(x["outliers"]) >= 20
    assert set(np.abs(x["outliers"][big]).tolist()) <= {25.0, 60.0} and np.abs(x["outliers"][~big]).max() < 1
    other = dataclasses.replace(config, weight_seed=seed + 1)  # the seed is the config's
    assert not np.array_equal(OP.make_input("normal", other), x["normal"])


def test_constants_files_round_trip_and_a_wrong_shape_is_named():
    _, constants = random_constants(12, 98)
    config = qcs4w_config(3, 98, 12)
    back = OP.constants_from_files(OP.constants_to_files(constants), config)
    assert np.array_equal(back.weight_packed, constants.weight_packed) and back.K == 98
    assert OP.check_constants(back, config) == ""
    assert "config 't3x100x12' has N=12, K=100" in OP.check_constants(back, qcs4w_config(3, 100, 12))
    synthetic = OP.synthetic_constants(config, seed=1)
    assert OP.check_constants(synthetic, config) == ""


def test_bindings_follow_executorchs_layout():
    _, constants = random_constants(12, 98)
    x = np.ones((3, 98), np.float32)
    bindings = OP.bindings(x, constants)
    assert bindings.output_index == 0 and bindings.output_shape == (3, 12)
    by_index = {b.index: b for b in bindings.inputs}
    assert sorted(by_index) == [1, 2, 3, 4]
    assert by_index[4].kind == "uniform" and by_index[4].data.tolist() == [3, 12, 98, 49]
    assert all(by_index[i].kind == "read-only-storage" for i in (1, 2, 3))
    words = by_index[2].data
    assert words.dtype == np.dtype("<u4") and words.size == 12 * 49 // 4
    assert np.array_equal(words.view(np.uint8), constants.weight_packed.reshape(-1))  # little-endian bytes
    assert np.array_equal(by_index[3].data, constants.scales)
    with pytest.raises(ValueError, match="K=64"):
        OP.bindings(np.ones((1, 64), np.float32), constants)


# ---- ExecuTorch's kernel set: the host's dispatch --------------------------------------------------------------

def host_workgroups(M: int, N: int, wg_size: int, max_per_dimension: int) -> tuple[int, int]:
    """QuantizedLinearQcs4w.cpp's count, transcribed: ceil(M/4) * ceil(N/4) tiles over wg_size invocations,
    compute_2d_workgroup_count's fold (near-square past the per-dimension limit)."""
    count = math.ceil(math.ceil(M / 4) * math.ceil(N / 4) / wg_size)
    if count <= max_per_dimension:
        return count, 1
    x = min(math.ceil(math.sqrt(count)), max_per_dimension)
    return x, math.ceil(count / x)


@pytest.mark.parametrize("M, N, limit", [(1, 16, 65535), (70, 138, 65535), (1, 128256, 65535),
                                         (8192, 2048, 65535), (8192, 2048, 1000), (4096, 2048, 97)])
def test_executorch_dispatch_is_the_hosts(M: int, N: int, limit: int):
    kernel_set = load_matrix(MATRIX).kernel_sets["executorch_qcs4w"]
    assert kernel_set.route == ("qcs4w_linear",) and kernel_set.op == OP.name
    (kernel,) = kernel_set.kernels
    adapter = AdapterInfo(name="x", limits={"max-compute-workgroups-per-dimension": limit,
                                            "max-compute-invocations-per-workgroup": 256})
    overrides, counts = resolve_kernel(kernel, {"M": M, "N": N, "K": 2048, "K_packed": 1024, "group_size": 2048},
                                       adapter)
    assert overrides == {"wg_size": 64} and counts == host_workgroups(M, N, 64, limit)
    folded_x, folded_y = counts
    assert folded_x * folded_y * 64 >= math.ceil(M / 4) * math.ceil(N / 4)  # every tile has an invocation


# ---- mutants ---------------------------------------------------------------------------------------------------

def test_every_mutant_edit_applies_once_and_changes_the_kernel():
    suite = op_for(OP.name).mutation_suite()
    reference = suite.reference.read_text()
    sources = mutants.mutant_sources(op_name=OP.name)
    assert set(sources) == {m.name for m in suite.mutants} and len(sources) >= 15
    assert all(text != reference for text in sources.values())
    assert len(set(sources.values())) == len(sources)
    assert suite.dispatch == "ceil(N / wg_size), M"
