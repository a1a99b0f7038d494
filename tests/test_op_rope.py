"""Op rope (q4gsw/ops/rope/): ExecuTorch's et_vk.apply_rotary_emb on one tensor.

Offline: the golden against complex multiplication and hand values, the Llama-3 frequency scaling against its
definition, the error model's terms, inputs, bindings in RotaryEmbedding.cpp's layout, shape rules, the fixture
files, ExecuTorch's dispatch limit and every mutant's edits. The export, the kernels on SwiftShader and
ExecuTorch's own kernel are in test_op_rope_e2e.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from q4gsw.matrix.expressions import evaluate
from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import registry
from q4gsw.ops.rope.golden import cpu_reference, error_model, golden
from q4gsw.ops.rope.mutants import CATALOGUE, REFERENCE
from q4gsw.ops.rope.tables import RopeTables, llama3_frequencies, llama3_tables, upstream_tables

REPO = Path(__file__).resolve().parent.parent
U = 2.0**-24
OP = registry()["rope"]


def rope_config(seq: int, heads: int, head_dim: int, start_pos: int = 0, weights: str = "llama3",
                inputs: tuple[str, ...] = ("normal",)) -> Config:
    return Config(name="t", dims={"seq": seq, "heads": heads, "head_dim": head_dim, "start_pos": start_pos},
                  tier="required", suite="rope-test", inputs=inputs, weights=weights, weight_seed=0, timeout_s=60.0,
                  tolerance=Tolerance(atol=1e-6, rtol=4e-7, justification="test"), op="rope")


def random_tables(seq: int, half: int, seed: int = 0) -> RopeTables:
    angles = np.random.default_rng(seed).uniform(-4, 4, (seq, half))
    return RopeTables(cos=np.cos(angles).astype(np.float32), sin=np.sin(angles).astype(np.float32), start_pos=0)


def test_golden_by_hand():
    tables = RopeTables(cos=np.array([[0.6]], np.float32), sin=np.array([[0.8]], np.float32), start_pos=0)
    x = np.array([[[1.0, 2.0]]], np.float32)
    # (1 + 2i)(0.6 + 0.8i) = 0.6 - 1.6 + (0.8 + 1.2)i, with the fp32 tables' own values
    c, s = float(np.float32(0.6)), float(np.float32(0.8))
    assert golden(x, tables).tolist() == [[[1 * c - 2 * s, 1 * s + 2 * c]]]


def test_golden_is_the_complex_product_of_each_interleaved_pair_with_its_tokens_row():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 8)).astype(np.float32)
    tables = random_tables(3, 4)
    z = x[..., 0::2].astype(np.float64) + 1j * x[..., 1::2].astype(np.float64)  # pairs (2i, 2i+1)
    w = tables.cos.astype(np.float64) + 1j * tables.sin.astype(np.float64)  # row s for token s, every head
    expected = np.stack([(z * w[:, None, :]).real, (z * w[:, None, :]).imag], axis=-1).reshape(3, 2, 8)
    assert np.allclose(golden(x, tables), expected, rtol=0, atol=1e-15)


def test_cpu_reference_is_within_the_error_models_bound():
    x = np.random.default_rng(2).standard_normal((4, 3, 16)).astype(np.float32) * 30
    tables = random_tables(4, 8)
    model = error_model(x, tables)
    err = np.abs(cpu_reference(x, tables) - golden(x, tables))
    assert err.max() > 0 and np.all(err <= model.est) and np.all(model.est <= model.worst)


def test_error_model_terms_by_hand():
    tables = RopeTables(cos=np.array([[0.5]], np.float32), sin=np.array([[-0.25]], np.float32), start_pos=0)
    x = np.array([[[4.0, -8.0]]], np.float32)
    model = error_model(x, tables)
    # y_r = 4 * 0.5 - (-8)(-0.25) = 0, S = 2 + 2; y_i = 4(-0.25) + (-8)(0.5) = -5, S = 1 + 4
    assert model.S.tolist() == [[[4.0, 5.0]]] and model.K == 2
    assert model.step.tolist() == [[[2 * 8 * 0.25, 2 * 4 * 0.25]]]  # the conjugate rotation's change
    assert model.est[0, 0, 0] == pytest.approx(U * 4, rel=1e-6)  # u (S + |y|)
    assert model.est[0, 0, 1] == pytest.approx(U * 10, rel=1e-6)
    assert model.worst[0, 0, 1] == pytest.approx(3 * U * 5, rel=1e-6)


def test_position_zero_is_the_identity_and_the_error_model_says_no_rotation_bug_shows():
    tables = llama3_tables(1, 64, 0)
    x = np.random.default_rng(3).standard_normal((1, 32, 64)).astype(np.float32)
    assert np.array_equal(golden(x, tables), x.astype(np.float64))
    assert np.all(error_model(x, tables).step == 0)


def test_llama3_scaling_keeps_high_frequencies_divides_low_ones_and_blends_three():
    base = 500000.0 ** (-np.arange(0, 64, 2) / 64)
    freqs = llama3_frequencies(64)
    wavelen = 2 * math.pi / base
    kept, scaled = wavelen < 8192 / 4, wavelen > 8192
    assert kept.sum() == 15 and scaled.sum() == 14  # i = 0..14 kept, 18..31 divided by 32, 15..17 blended
    assert np.allclose(freqs[kept], base[kept], rtol=1e-15)
    assert np.allclose(freqs[scaled], base[scaled] / 32, rtol=1e-15)
    i = 16
    smooth = (8192 / wavelen[i] - 1) / (4 - 1)
    assert freqs[i] == pytest.approx((1 - smooth) * base[i] / 32 + smooth * base[i], rel=1e-15)
    assert base[i] / 32 < freqs[i] < base[i]


def test_llama3_tables_are_rows_from_start_pos():
    rows = llama3_tables(3, 8, 5)
    angle = 6 * llama3_frequencies(8)[2]  # position start_pos + 1, pair 2
    assert rows.cos[1, 2] == np.float32(math.cos(angle)) and rows.sin[1, 2] == np.float32(math.sin(angle))
    assert rows.seq == 3 and rows.half_dim == 4 and rows.start_pos == 5


def test_upstream_tables_and_ramp_input_are_test_ropes():
    tables = upstream_tables(5, 64)
    i = np.arange(5 * 32)
    assert np.array_equal(tables.cos.ravel(), ((i % 11) - 5) / 16)
    assert np.array_equal(tables.sin.ravel(), ((i % 7) - 3) / 16)
    x = OP.make_input("ramp", rope_config(5, 8, 64, weights="upstream", inputs=("ramp",)))
    j = np.arange(5 * 8 * 64)
    assert x.shape == (5, 8, 64) and x.dtype == np.float32 and np.array_equal(x.ravel(), ((j % 17) - 8) / 16)


def test_bindings_follow_rotary_embeddings_layout():
    x = np.zeros((3, 5, 6), np.float32)
    tables = random_tables(3, 3)
    b = OP.bindings(x, tables)
    assert b.output_index == 0 and b.output_shape == (3, 5, 6)
    assert [(g.index, g.kind) for g in b.inputs] == [(1, "read-only-storage"), (2, "read-only-storage"),
                                                    (3, "read-only-storage"), (4, "uniform")]
    assert b.inputs[1].data is not None and np.array_equal(b.inputs[1].data, tables.cos)
    assert np.array_equal(b.inputs[2].data, tables.sin)
    # RotaryParams {n_heads, seq, head_dim, half_dim, num_pairs, pad x3}: 32 bytes
    assert b.inputs[3].data.tolist() == [5, 3, 6, 3, 45, 0, 0, 0] and b.inputs[3].data.nbytes == 32
    with pytest.raises(ValueError, match="does not fit"):
        OP.bindings(np.zeros((2, 5, 6), np.float32), tables)


@pytest.mark.parametrize("dims, weights, key", [((1, 1, 3, 0), "llama3", "head_dim"),
                                                ((2, 1, 4, 3), "upstream", "start_pos"),
                                                ((70000, 1, 2, 0), "llama3", "seq"),
                                                ((1, 8, 64, 131072), "llama3", "start_pos"),
                                                ((2, 8, 64, 131071), "llama3", "start_pos"),
                                                ((1, 8, 64, 2_000_000_000), "llama3", "start_pos")])
def test_shape_problems_name_the_key(dims, weights, key):
    problems = OP.shape_problems(rope_config(*dims, weights=weights))
    assert [p.key for p in problems] == [key] and all(p.fix for p in problems)
    assert OP.shape_problems(rope_config(8192, 32, 64)) == []
    assert OP.shape_problems(rope_config(1, 8, 64, 131071)) == []  # the last position of the context


def test_shape_rules_hold_at_their_bounds():
    assert OP.shape_problems(rope_config(65535, 1, 2)) == []  # the grid's last row of tokens
    assert [p.key for p in OP.shape_problems(rope_config(65536, 1, 2))] == ["seq"]
    assert OP.shape_problems(rope_config(1, 1, 2**29)) == []  # x of exactly 2 GiB
    (problem,) = OP.shape_problems(rope_config(1, 1, 2**29 + 2))
    assert problem.key == "seq" and "2.0 GiB" in problem.problem


def test_constants_files_round_trip_with_the_configs_start_pos():
    tables = llama3_tables(4, 16, 9)
    files = OP.constants_to_files(tables)
    assert set(files) == set(OP.constant_files)
    back = OP.constants_from_files(files, rope_config(4, 2, 16, start_pos=9))
    assert np.array_equal(back.cos, tables.cos) and np.array_equal(back.sin, tables.sin) and back.start_pos == 9


def host_workgroups(num_pairs: int, max_invocations: int, max_per_dimension: int) -> int | None:
    """RotaryEmbedding.cpp: wg = min(64, limit); compute_1d_workgroup_count throws above the dimension limit."""
    count = -(-num_pairs // min(64, max_invocations))
    return None if count > max_per_dimension else count


@pytest.mark.parametrize("seq, heads", [(1, 8), (5, 2), (4095, 32), (4096, 32), (4096, 8), (8192, 8), (8192, 32)])
def test_executorchs_kernel_runs_where_its_host_dispatches_it(seq, heads):
    matrix = load_matrix(REPO / "matrix.toml")
    kernel = next(k for k in matrix.kernel_sets["executorch_rope"].kernels if k.name == "rotary_embedding")
    names = {**OP.derived_names({"seq": seq, "heads": heads, "head_dim": 64, "start_pos": 0}),
             "seq": seq, "heads": heads, "head_dim": 64, "start_pos": 0, "max_invocations_per_workgroup": 256,
             "max_workgroups_per_dimension": 65535, "wg_size": 64}
    expected = host_workgroups(seq * heads * 32, 256, 65535)
    assert bool(evaluate(kernel.when, names)) == (expected is not None)
    if expected is not None:
        assert kernel.dispatch == ("ceil(num_pairs / wg_size)",) and evaluate(kernel.dispatch[0], names) == expected


def test_every_mutant_edit_applies_once_and_changes_the_kernel():
    text = REFERENCE.read_text()
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE)
    for mutant in CATALOGUE:
        assert mutant.source(text) != text, mutant.name


def test_every_rope_config_is_in_its_suites_with_a_justified_tolerance():
    configs = [c for c in load_matrix(REPO / "matrix.toml").configs if c.op == "rope"]
    assert {c.suite for c in configs} == {"rope-llama", "rope-edges"}
    assert all(len(c.tolerance.justification) > 200 for c in configs)
    required = {(c.dims["seq"], c.dims["heads"], c.dims["start_pos"]) for c in configs if c.tier == "required"}
    for heads in (32, 8):
        assert {(1, heads, 0), (1, heads, 127), (1, heads, 4095), (128, heads, 0), (512, heads, 0)} <= required
        assert any(seq > 1 and start and h == heads for seq, h, start in required)


# ------------------------------------------------------------------------------------------------
# The rows read from the delegate (a fake one: the chain the Llama Rope's step lowers to)
# ------------------------------------------------------------------------------------------------

TABLE_COS = np.arange(40, dtype=np.float32).reshape(10, 4)  # 10 positions, head_dim 8
TABLE_SIN = -TABLE_COS


class FakeRopeDelegate:
    """prepack(0 -> 1), prepack(2 -> 3), select_as_symint(input_pos 4 -> 9), add(9, 10 -> 11), slice_copy(1, 7, 9,
    11, 8 -> 12), slice_copy(3, ... -> 13), apply_rotary_emb(5, 6, 12, 13, 16): the ids of a real export."""

    def __init__(self, seq: int, heads: int, ints: dict[int, int] | None = None, swap: bool = False,
                 add_from: int = 9, half: int = 4) -> None:
        from q4gsw.ops.rope.tables import DELEGATE_CALLS

        calls = [(0, 1), (2, 3), (4, 7, 8, 9), (add_from, 10, 11), (1, 7, 9, 11, 8, 12), (3, 7, 9, 11, 8, 13),
                 (5, 6, 13 if swap else 12, 12 if swap else 13, 16)]
        chain = [SimpleNamespace(name=n, args=list(a)) for n, a in zip(DELEGATE_CALLS, calls, strict=True)]
        self.graph = SimpleNamespace(chain=chain)
        self.names = DELEGATE_CALLS
        ints = {7: 0, 8: 1, 10: seq, **(ints or {})}
        self.values = {k: SimpleNamespace(int_val=v) for k, v in ints.items()}
        self.values.update({5: SimpleNamespace(dims=[1, seq, heads, 8]), 12: SimpleNamespace(dims=[seq, half]),
                            13: SimpleNamespace(dims=[seq, half]), 9: SimpleNamespace(value=0)})

    def args(self, operator: str, calls: tuple[str, ...] = ()) -> list[int]:
        assert calls == self.names and operator == self.names[-1]
        return list(self.graph.chain[-1].args)

    def value(self, arg: int):
        return self.values[arg]

    def constant(self, arg: int, dtype: str) -> np.ndarray:
        assert dtype == "<f4"
        return {0: TABLE_COS, 2: TABLE_SIN}[arg]


def rows_from(monkeypatch, delegate: FakeRopeDelegate, seq: int, heads: int, start_pos: int) -> RopeTables:
    from q4gsw.export import pte
    from q4gsw.ops.rope.recipe import rows_from_pte

    monkeypatch.setattr(pte, "read_delegate", lambda data: delegate)
    return rows_from_pte(b"fake", rope_config(seq, heads, 8, start_pos))


def test_rows_are_the_delegates_tables_from_start_pos(monkeypatch):
    rows = rows_from(monkeypatch, FakeRopeDelegate(3, 2), 3, 2, 6)
    assert np.array_equal(rows.cos, TABLE_COS[6:9]) and np.array_equal(rows.sin, TABLE_SIN[6:9])
    assert rows.start_pos == 6


@pytest.mark.parametrize("delegate, seq, start_pos, words", [
    (FakeRopeDelegate(3, 2, ints={7: 1}), 3, 0, "not a step-1 slice along dim 0"),
    (FakeRopeDelegate(3, 2, ints={8: 2}), 3, 0, "not a step-1 slice along dim 0"),
    (FakeRopeDelegate(3, 2, ints={10: 4}), 3, 0, "does not run from input_pos to input_pos + S"),
    (FakeRopeDelegate(3, 2), 3, 8, "has no rows [8, 11)"),
    (FakeRopeDelegate(3, 4), 3, 0, "binds xq [1, 3, 4, 8]"),
    (FakeRopeDelegate(3, 2, add_from=4), 3, 0, "does not run from input_pos to input_pos + S"),  # end = pos + S
    (FakeRopeDelegate(3, 2, half=3), 3, 0, "freqs [[3, 3], [3, 3]]"),
])
def test_a_delegate_that_is_not_the_llama_step_is_refused(monkeypatch, delegate, seq, start_pos, words):
    from q4gsw.export.pte import DelegateLayoutError

    with pytest.raises(DelegateLayoutError, match=re.escape(words)):
        rows_from(monkeypatch, delegate, seq, 2, start_pos)


def test_cos_and_sin_are_read_from_the_rotations_own_arguments(monkeypatch):
    rows = rows_from(monkeypatch, FakeRopeDelegate(2, 2, swap=True), 2, 2, 0)  # the rotation binds sin's slice first
    assert np.array_equal(rows.cos, TABLE_SIN[:2]) and np.array_equal(rows.sin, TABLE_COS[:2])


def test_cross_check_compares_the_rows_with_the_models_table_at_start_pos():
    from q4gsw.export.pte import DelegateLayoutError
    from q4gsw.ops.rope.recipe import cross_check

    config = rope_config(3, 2, 8, start_pos=6)
    cross_check(RopeTables(cos=TABLE_COS[6:9], sin=TABLE_SIN[6:9], start_pos=6), (TABLE_COS, TABLE_SIN), config)
    off = TABLE_SIN[6:9].copy()
    off[1, 2] = np.nextafter(off[1, 2], np.float32(0))
    for rows, tables, words in (
            (RopeTables(cos=TABLE_COS[:3], sin=TABLE_SIN[:3], start_pos=6), (TABLE_COS, TABLE_SIN),
             "freqs_cos rows [6, 9)"),
            (RopeTables(cos=TABLE_COS[6:9], sin=off, start_pos=6), (TABLE_COS, TABLE_SIN), "freqs_sin rows [6, 9)"),
            (RopeTables(cos=TABLE_COS[6:9], sin=TABLE_SIN[6:9], start_pos=6),
             (TABLE_COS.astype(np.float64), TABLE_SIN), "freqs_cos rows")):  # a model table not in fp32
        with pytest.raises(DelegateLayoutError, match=re.escape(words)):
            cross_check(rows, tables, config)


def test_a_slice_whose_start_is_not_input_pos_is_refused(monkeypatch):
    from q4gsw.export.pte import DelegateLayoutError

    delegate = FakeRopeDelegate(3, 2)
    delegate.graph.chain[2].name = "aten.sym_size.int"  # start = another symint than the select of input_pos
    with pytest.raises(DelegateLayoutError, match="does not run from input_pos to input_pos"):
        rows_from(monkeypatch, delegate, 3, 2, 0)


def test_the_upstream_export_must_pass_its_tables_as_inputs(monkeypatch):
    from q4gsw.export import pte
    from q4gsw.export.pte import DelegateLayoutError
    from q4gsw.ops.rope.recipe import check_upstream_pte

    def delegate(cos_constant: int) -> SimpleNamespace:
        values = {0: SimpleNamespace(dims=[1, 3, 2, 8], constant_id=-1),
                  2: SimpleNamespace(dims=[3, 4], constant_id=cos_constant),
                  3: SimpleNamespace(dims=[3, 4], constant_id=-1)}
        return SimpleNamespace(args=lambda operator: [0, 1, 2, 3, 4], value=values.__getitem__)

    monkeypatch.setattr(pte, "read_delegate", lambda data: delegate(-1))
    check_upstream_pte(b"fake", rope_config(3, 2, 8, weights="upstream"))
    monkeypatch.setattr(pte, "read_delegate", lambda data: delegate(0))
    with pytest.raises(DelegateLayoutError, match=re.escape("freqs arguments [2] are constants")):
        check_upstream_pte(b"fake", rope_config(3, 2, 8, weights="upstream"))
