"""Input distributions and weight patterns: deterministic, and the edge patterns really reach the int4 edges."""

from __future__ import annotations

import numpy as np
import pytest

from q4gsw.matrix.load import Config, Tolerance
from q4gsw.ops import inputs
from q4gsw.ops.linear_q4gsw.layout import unpack_int4


def _torchao_like_quantize(w: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """torchao's symmetric int4 group quantization, restated in numpy (checked against the real one below)."""
    N, K = w.shape
    groups = w.reshape(N, K // group_size, group_size)
    scale = np.maximum(np.abs(groups).max(axis=2) / np.float32(7.5), np.finfo(np.float32).tiny).astype(np.float32)
    q = np.clip(np.round(groups / scale[..., None]), -8, 7).astype(np.int8)
    return q.reshape(N, K), scale


@pytest.mark.parametrize("name", sorted(inputs.INPUTS))
def test_inputs_are_deterministic_and_finite(name: str):
    a = inputs.make_input(name, 3, 64, 5)
    b = inputs.make_input(name, 3, 64, 5)
    assert a.dtype == np.float32 and a.shape == (3, 64)
    assert np.array_equal(a, b) and np.isfinite(a).all()


# torch_linear is ExecuTorch's own fixture (torch.manual_seed + nn.Linear): it needs the export stack.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.e2e) if n == "torch_linear" else n
                                  for n in sorted(inputs.WEIGHTS)])
def test_weights_are_deterministic(name: str):
    a = inputs.make_weights(name, 16, 64, 8, 3)
    assert a.dtype == np.float32 and a.shape == (16, 64)
    assert np.array_equal(a, inputs.make_weights(name, 16, 64, 8, 3))
    assert not np.array_equal(a, inputs.make_weights(name, 16, 64, 8, 4))


EDGE_PATTERNS = ["int4_edges", "int4_tiny_scales", "int4_huge_scales"]


@pytest.mark.parametrize("pattern", EDGE_PATTERNS)
@pytest.mark.parametrize("group_size", [8, 32, 64, 128])
def test_edge_patterns_hit_both_extremes_and_zero_groups(pattern: str, group_size: int):
    N, K = 24, 256
    w = inputs.make_weights(pattern, N, K, group_size, 0)
    q, scale = _torchao_like_quantize(w, group_size)
    groups = q.reshape(N, K // group_size, group_size)
    zero = (groups == 0).all(axis=2)
    assert zero.any(), "no all-zero group"
    live = ~zero
    assert ((groups == -8).any(axis=2) == live).all(), "a non-zero group lacks nibble -8"
    assert ((groups == 7).any(axis=2) == live).all(), "a non-zero group lacks nibble 7"
    # Quantization is exact except at the two extremes, which are +-7.5*s by construction.
    ratio = w / np.repeat(scale, group_size, axis=1)
    extreme = np.abs(ratio) == 7.5
    assert np.array_equal(ratio[~extreme], q[~extreme])
    assert set(q[extreme].tolist()) == {-8, 7}
    assert scale[zero].max() == np.finfo(np.float32).tiny
    assert len(np.unique(scale[live])) >= 3  # scales vary between groups: a wrong group index shows


def test_scale_ranges():
    def live_scales(name: str) -> np.ndarray:
        _, scale = _torchao_like_quantize(inputs.make_weights(name, 16, 256, 32, 0), 32)
        return scale[scale > np.finfo(np.float32).tiny]

    tiny, huge = live_scales("int4_tiny_scales"), live_scales("int4_huge_scales")
    assert tiny.min() == 2.0**-24 and tiny.max() == 2.0**-21
    assert huge.min() == 2.0**8 and huge.max() == 2.0**11
    # Products with |x| >= 1/16 stay normal fp32 numbers; huge ones stay far from fp32 overflow.
    assert tiny.min() / 16 > np.finfo(np.float32).tiny
    assert huge.max() * 8 * 64 * 8192 < 1e12


def test_int4_saturated_is_all_extremes():
    w = inputs.int4_saturated(8, 128, 32, 1)
    q, _ = _torchao_like_quantize(w, 32)
    assert set(np.unique(q).tolist()) == {-8, 7}


@pytest.mark.e2e
def test_exported_pte_holds_the_extreme_nibbles():
    """The real path: torchao quantize + ExecuTorch Vulkan lowering + unpack of the .pte delegate."""
    pytest.importorskip("executorch")
    from q4gsw.ops.linear_q4gsw.layout import packed_from_delegate as read_pte
    from q4gsw.ops.linear_q4gsw.recipe import cross_check, export_pte

    config = Config(name="edges_tiny", dims={"M": 1, "K": 64, "N": 16, "group_size": 8}, tier="required", suite="test",
                    inputs=("ramp",), weights="int4_edges", weight_seed=0, timeout_s=60,
                    tolerance=Tolerance(1e-5, 1e-4, "test"))
    pte, qweight = export_pte(config)
    packed = read_pte(pte)
    cross_check(packed, qweight, config)
    q = unpack_int4(packed.weight_packed)
    w = inputs.make_weights("int4_edges", 16, 64, 8, 0)
    expected_q, expected_scale = _torchao_like_quantize(w, 8)
    assert np.array_equal(q, expected_q)
    assert np.array_equal(packed.scales[:, :16], expected_scale.T)
    nibbles = np.concatenate([packed.weight_packed & 0xF, packed.weight_packed >> 4])
    assert {0x0, 0x8, 0xF} <= set(np.unique(nibbles).tolist())
    groups = q.reshape(16, 8, 8)
    zero = (groups == 0).all(axis=2)
    assert zero.any() and (packed.scales[:, :16].T[zero] == np.finfo(np.float32).tiny).all()


def test_ramp_is_the_documented_sequence_over_the_flattened_input():
    """x[i] = ((i % 17) - 8) / 16 over the row-major M*K input (issue 22: a changed formula was caught only by an
    e2e test). The oracle is the period written out, -8/16 .. 8/16, laid end to end across row boundaries."""
    period = [k / 16 for k in range(-8, 9)]  # 17 values, each exact in fp32
    M, K = 5, 24  # K is not a multiple of 17: a row starts mid-period
    x = inputs.make_input("ramp", M, K, seed=123)  # the seed does not matter for the ramp
    expected = (period * (M * K // 17 + 1))[: M * K]
    assert x.dtype == np.float32 and x.shape == (M, K)
    assert x.ravel().tolist() == expected
    assert x[1, 0] == period[24 % 17] == -0.0625 and x[0, 16] == 0.5 and x[0, 17] == -0.5
    assert np.array_equal(x, inputs.make_input("ramp", M, K, seed=0))
