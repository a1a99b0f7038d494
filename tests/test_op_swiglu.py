"""Op swiglu (q4gsw/ops/swiglu/): the SwiGLU ExecuTorch's WebGPU runtime fuses into mul/silu_mul_fused.wgsl.

Offline: when the runtime pass fuses (fusion.py on hand-written delegate chains: the pattern, each orientation, and
the graphs it leaves unfused, 8da4w's linears among them), the operand packing, the fp64 golden and the error
model's bound (expected values by hand), the inputs' saturating gates, shape rules, the bindings in the fused
dispatch's layout, the dispatch fold, the matrix block's tolerances and every mutant's edits. End to end (e2e): the
export (the delegate's five calls, fused once), the reference kernel and every mutant on SwiftShader through
`q4gsw mutants`, and ExecuTorch's silu_mul_fused.wgsl through `run --executorch` from a copy of the checkout,
passing, then failing with a bug planted in it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from q4gsw.matrix.expressions import evaluate, split_dispatch
from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import expression_names, registry
from q4gsw.ops.swiglu.fusion import LINEAR, MUL, SIGMOID, Fusion, find_fusions
from q4gsw.ops.swiglu.golden import U, cpu_reference, error_model, golden, operands, relative_bound
from q4gsw.ops.swiglu.inputs import make_gate_up
from q4gsw.ops.swiglu.mutants import CATALOGUE, REFERENCE
from q4gsw.ops.swiglu.recipe import EXPECTED_CALLS

REPO = Path(__file__).resolve().parent.parent
OP = registry()["swiglu"]
TOLERANCE = Tolerance(atol=2.4e-38, rtol=1e-4, justification="test: exp and division accuracy")

# The chain the Vulkan partitioner exports for upstream's SwiGluModule (value ids as a real export numbers them):
# x = 4; gate_proj -> 7, up_proj -> 9, sigmoid(7) -> 10, mul(7, 10) -> 11, mul(11, 9) -> 12 (the graph output).
CHAIN = [(LINEAR, [4, 0, 1, 5, 6, 7]), (LINEAR, [4, 2, 3, 5, 8, 9]), (SIGMOID, [7, 10]), (MUL, [7, 10, 11]),
         (MUL, [11, 9, 12])]


def make_config(rows: int, width: int, inputs: tuple[str, ...] = ("normal",)) -> Config:
    return Config(name="t", dims={"rows": rows, "width": width}, tier="required", suite="swiglu-test",
                  inputs=inputs, weights="none", weight_seed=0, timeout_s=300.0, tolerance=TOLERANCE, op="swiglu")


# ---- when the runtime fuses --------------------------------------------------------------------------------------


def test_the_exported_chain_is_fused_once_in_every_orientation():
    assert find_fusions(CHAIN, [12]) == [Fusion(x=4, gate=7, up=9, out=12)]
    reordered = [*CHAIN[:3], (MUL, [10, 7, 11]), (MUL, [9, 11, 12])]  # sigmoid * gate, up * silu (upstream's
    assert find_fusions(reordered, [12]) == [Fusion(x=4, gate=7, up=9, out=12)]  # reverse_inner / reverse_outer)


@pytest.mark.parametrize("why, chain, outputs", [
    ("8da4w's linears", [("et_vk.linear_dq8ca_q4gsw.default", [4, 0, 1, 5, 6, 7]), *CHAIN[1:]], [12]),
    ("separate inputs", [CHAIN[0], (LINEAR, [13, 2, 3, 5, 8, 9]), *CHAIN[2:]], [12]),
    ("silu also a graph output", CHAIN, [12, 11]),
    ("gate read again", [*CHAIN, (MUL, [7, 12, 14])], [14]),
    ("sigmoid of up", [*CHAIN[:2], (SIGMOID, [9, 10]), *CHAIN[3:]], [12]),
    ("mul before its sigmoid", [CHAIN[0], CHAIN[1], CHAIN[3], CHAIN[2], CHAIN[4]], [12]),
    ("up read again", [*CHAIN, (MUL, [9, 12, 14])], [14]),
    ("sigmoid read again", [*CHAIN, (MUL, [10, 12, 14])], [14]),
    ("silu read again", [*CHAIN, (MUL, [11, 12, 14])], [14]),
    ("out defined twice", [*CHAIN, (SIGMOID, [4, 12])], [12]),
    ("a sigmoid of three arguments", [*CHAIN[:2], (SIGMOID, [7, 10, 15]), *CHAIN[3:]], [12]),
])
def test_graphs_the_pass_leaves_unfused(why, chain, outputs):
    assert find_fusions(chain, outputs) == [], why


# ---- golden, error model, inputs ---------------------------------------------------------------------------------


def test_golden_by_hand_and_the_saturated_sigmoid():
    gate = np.array([[0.0, 2.0, -80.0, 80.0]], dtype=np.float32)
    up = np.array([[5.0, 3.0, 1.0, 0.5]], dtype=np.float32)
    y = golden(gate, up)
    assert y[0, 0] == 0.0
    assert y[0, 1] == pytest.approx(2.0 * 3.0 / (1.0 + math.exp(-2.0)), rel=1e-15)
    assert y[0, 2] == pytest.approx(-80.0 * math.exp(-80.0), rel=1e-12)  # sigmoid(-80) = e^-80 / (1 + e^-80)
    assert y[0, 3] == pytest.approx(40.0, rel=1e-30)  # sigmoid(80) = 1 to 1e-35
    assert np.all(np.abs(cpu_reference(gate, up) - y) <= relative_bound(gate) * np.abs(y))


def test_the_bound_is_the_exp_term_for_negative_gates_and_8u_for_positive():
    bound = relative_bound(np.array([-80.0, 0.0, 80.0]))
    assert bound[0] == pytest.approx((3 + 160) * 2 * U + 8 * U, rel=1e-9)  # sigmoid(80) = 1
    assert bound[1] == pytest.approx(3 * U + 8 * U)  # (3 + 0) 2u * 1/2
    assert bound[2] == pytest.approx(8 * U, rel=1e-9)  # e = exp(-80): its error never reaches y
    gate, up = operands(make_gate_up("outliers", 4, 64, 0))
    model = error_model(gate, up)
    assert model.K == 0 and np.allclose(model.worst, relative_bound(gate) * np.abs(golden(gate, up)))
    assert np.allclose(model.est, model.worst)
    # step: sigmoid(-g) for sigmoid(g) changes y by |g up| |sigmoid(g) - sigmoid(-g)| = |g up tanh(g / 2)|
    step = error_model(np.array([[2.0, -3.0]], np.float32), np.array([[3.0, 0.5]], np.float32)).step
    assert step[0].tolist() == pytest.approx([6 * math.tanh(1.0), 1.5 * math.tanh(1.5)], rel=1e-12)
    assert 3 * model.worst.max() / np.abs(golden(gate, up)).max() < 1e-4  # the configs' rtol keeps a 3x margin


def test_outliers_saturate_the_sigmoid_and_are_reproducible():
    x = make_gate_up("outliers", 8, 8192, 0)
    assert x.shape == (2, 8, 8192) and x.dtype == np.float32
    gate = x[0].reshape(-1)
    saturated = gate[np.arange(gate.size) % 11 == 5]
    assert np.all((np.abs(saturated) >= 20) & (np.abs(saturated) <= 80))
    assert (saturated < -70).any() and (saturated > 70).any()
    assert np.abs(x[1]).max() > 1e5  # a large up in the outlier row (rows // 2, x256)
    assert np.array_equal(make_gate_up("outliers", 8, 8192, 0), x)
    with pytest.raises(ValueError, match="no input"):
        make_gate_up("tiny", 1, 4, 0)
    with pytest.raises(ValueError, match=r"x\[2, rows, width\]"):
        operands(np.zeros((1, 2, 2), np.float32))


# ---- the Op ------------------------------------------------------------------------------------------------------


def test_bindings_are_the_fused_dispatchs_layout():
    x = make_gate_up("normal", 3, 5, 0)
    bindings = OP.bindings(x, EXPECTED_CALLS)
    assert bindings.output_index == 2 and bindings.output_shape == (3, 5)
    by_index = {b.index: b for b in bindings.inputs}
    assert np.array_equal(by_index[0].data, x[0].reshape(-1)) and np.array_equal(by_index[1].data, x[1].reshape(-1))
    assert by_index[3].kind == "uniform" and by_index[3].data.tolist() == [15, 0, 0, 0]  # SiluMulParams, 16 bytes
    files = OP.constants_to_files(EXPECTED_CALLS)
    assert OP.constants_from_files(files, make_config(3, 5)) == EXPECTED_CALLS
    assert OP.shape_problems(make_config(8192, 8192)) == []
    (problem,) = OP.shape_problems(make_config(8192 * 8 + 1, 8192))
    assert problem.key == "rows"


def test_the_unfused_routes_stages_hand_their_buffers_on():
    x = make_gate_up("normal", 2, 3, 0)
    sigmoid, mul_silu, mul_up = (OP.stage_bindings(s, x, EXPECTED_CALLS) for s in ("sigmoid", "mul_silu", "mul_up"))
    # sigmoid.wgsl: b0 gate, b1 s (written: storage), b2 UnaryParams {num_elements, min, max, pad}
    assert [(b.index, b.kind, b.shared) for b in sigmoid.inputs] == [
        (0, "read-only-storage", ""), (1, "storage", "sigmoid"), (2, "uniform", "")]
    assert sigmoid.output_index is None and sigmoid.inputs[2].data.tolist() == [6, 0, 0, 0]
    # binary mul(gate, s) -> t, then mul(t, up) -> out: s and t one buffer each across the dispatches
    assert [(b.index, b.shared) for b in mul_silu.inputs[:3]] == [(0, ""), (1, "sigmoid"), (2, "silu")]
    assert mul_silu.output_index is None and mul_silu.inputs[2].kind == "storage"
    assert [(b.index, b.shared) for b in mul_up.inputs[:2]] == [(0, "silu"), (1, "")] and mul_up.output_index == 2
    assert np.array_equal(mul_up.inputs[1].data, x[1].reshape(-1)) and np.array_equal(sigmoid.inputs[0].data,
                                                                                         x[0].reshape(-1))
    assert np.array_equal(mul_silu.inputs[0].data, x[0].reshape(-1))  # silu = gate * s, not up * s
    assert mul_up.inputs[2].data[:6].tolist() == [2, 6, 0, 0, 2, 3]  # TensorMeta of [2, 3]
    fused = OP.stage_bindings("fused", x, EXPECTED_CALLS)
    assert [b.index for b in fused.inputs] == [0, 1, 3] and fused.output_index == 2  # silu_mul_fused's layout
    with pytest.raises(ValueError, match="no stage"):
        OP.stage_bindings("relu", x, EXPECTED_CALLS)


def test_executorchs_dispatch_folds_from_the_512_row_prefill():
    kernel = next(k for k in load_matrix(REPO / "matrix.toml").kernel_sets["executorch_swiglu"].kernels
                  if k.name == "silu_mul_fused")
    config = make_config(1, 8192)

    def grid(rows: int) -> list[int]:
        names = {**expression_names(make_config(rows, 8192)), "wg_size": 64, "max_workgroups_per_dimension": 65535}
        return [int(evaluate(part, names)) for part in split_dispatch(", ".join(kernel.dispatch))]

    assert config.dims["width"] == 8192 and grid(1) == [128, 1] and grid(128) == [16384, 1]
    assert grid(512) == [256, 256]  # 65536 workgroups: one over the limit, folded near-square


def test_every_swiglu_config_has_the_exp_tolerance():
    configs = [c for c in load_matrix(REPO / "matrix.toml").configs if c.op == "swiglu"]
    assert {c.suite for c in configs} == {"swiglu-llama", "swiglu-edges"}
    assert {c.dims["rows"] for c in configs if c.suite == "swiglu-llama" and c.tier == "required"} == {1, 128, 512}
    assert all((c.tolerance.atol, c.tolerance.rtol) == (2.4e-38, 1e-4) for c in configs)
    assert all("outliers" in c.inputs for c in configs)


def test_every_mutant_edits_the_reference_once():
    reference = REFERENCE.read_text()
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE)
    for mutant in CATALOGUE:
        assert mutant.source(reference) != reference, mutant.name


# ---- e2e ---------------------------------------------------------------------------------------------------------

TOL_TOML = 'tolerance = { atol = 2.4e-38, rtol = 1e-4, justification = "exp 3 + 2|x| ULP, division 2.5 ULP" }'
# name: (rows, width, inputs): a tail off the workgroup size, and a folded dispatch for the mutation suite's
# wg_size 4 (33 x 8192: 67584 workgroups as 65535 x 2; with the fold's row stride wrong the second row rewrites
# elements 4.. and the last 8192 are never written)
E2E = {"t_tail": (3, 104, '["normal", "outliers"]'), "t_fold": (33, 8192, '["outliers"]')}


def e2e_matrix(folder: Path) -> Path:
    from elementwise_fixtures import matrix_block, write_matrix

    configs = "".join(f'\n[[config]]\nname = "{n}"\nop = "swiglu"\nsuite = "swiglu-test"\nrows = {r}\n'
                      f'width = {w}\ntier = "required"\ninputs = {x}\n{TOL_TOML}\n' for n, (r, w, x) in E2E.items())
    return write_matrix(folder, matrix_block(REPO, "[kernel.swiglu_reference]"), configs)


@pytest.mark.e2e
def test_reference_passes_and_every_mutant_is_killed_on_swiftshader(swiftshader_icd, tmp_path):
    from helpers import run_mutants_on_swiftshader

    matrix = e2e_matrix(tmp_path)
    done, payload = run_mutants_on_swiftshader(tmp_path, matrix, "swiglu", swiftshader_icd)
    summary = payload["summary"]
    assert done.returncode == 0, (summary["survivors"], done.stdout[-3000:] + done.stderr[-2000:])
    assert summary["survivors"] == [] and summary["killed"] == len(CATALOGUE)
    assert set(summary["killed_by"]["fold_stride_wg"]) == {"t_fold/outliers"}
    assert "t_tail/normal" not in summary["killed_by"]["exp_clamped"]  # |g| < 16 there: the clamp changes nothing


@pytest.mark.e2e
def test_executorchs_kernel_passes_and_fails_with_a_planted_bug(swiftshader_icd, tmp_path):
    """ExecuTorch's own silu_mul_fused.wgsl, copied from the checkout into a temporary tree (never into q4gsw)."""
    from conftest import run_cli

    checkout = Path(os.environ.get("Q4GSW_EXECUTORCH", "/work/et"))
    if not (checkout / OP.executorch_folder / "silu_mul_fused.wgsl").is_file():
        pytest.skip(f"no ExecuTorch checkout with {OP.executorch_folder} (set Q4GSW_EXECUTORCH)")
    tree = tmp_path / "executorch"
    ops = Path(OP.executorch_folder).parent
    for folder in (Path(OP.executorch_folder), ops / "sigmoid", ops / "binary_op", ops.parent.parent / "scripts"):
        shutil.copytree(checkout / folder, tree / folder)  # the fused kernel, the unfused route's, the generator
    matrix = e2e_matrix(tmp_path)
    kernel = tree / OP.executorch_folder / "silu_mul_fused.wgsl"

    def run(results: str) -> tuple[int, dict[str, dict]]:
        done = run_cli("run", "--in-process", "--executorch", str(tree), "--backend", "swiftshader-dawn", "--matrix",
                       str(matrix), "--all-variants", "--config", "t_tail", "--fixtures", str(tmp_path / "fixtures"),
                       "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / results), env=swiftshader_icd)
        path = tmp_path / results / "results.json"
        assert path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
        found = json.loads(path.read_text())["results"]
        return done.returncode, {f"{r['kernel']}/{r['input']}": r for r in found if r["status"] != "skip"}

    code, results = run("good")  # the fused route (routed) and the unfused chain (sigmoid, mul, mul)
    assert code == 0 and set(results) == {f"{k}/{i}" for k in ("silu_mul_fused", "binary_mul")
                                          for i in ("normal", "outliers")}
    assert all(r["status"] == "pass" and r["routed"] == "silu_mul_fused" for r in results.values())
    assert results["silu_mul_fused/normal"]["workgroups"][:2] == [math.ceil(312 / 64), 1]
    # The sigmoid's exponent with the wrong sign in the fused kernel: silu(g) = g * sigmoid(-g).
    kernel.write_text(kernel.read_text().replace("exp(-g)", "exp(g)"))
    code, results = run("planted")
    assert code == 1 and {k: r["status"] for k, r in results.items()} == {
        "silu_mul_fused/normal": "fail", "silu_mul_fused/outliers": "fail",
        "binary_mul/normal": "pass", "binary_mul/outliers": "pass"}




def test_cross_check_wants_the_five_calls_one_fusion_and_rows_x_width_operands(monkeypatch):
    from q4gsw.export.pte import DelegateLayoutError
    from q4gsw.ops.swiglu import recipe

    dims = {i: [3, 16] for i in (7, 9, 10, 11, 12)}
    monkeypatch.setattr(recipe, "delegate_chain", lambda pte: (CHAIN, [12], dims))
    recipe.cross_check(b"fake", EXPECTED_CALLS, EXPECTED_CALLS, make_config(3, 16))
    with pytest.raises(DelegateLayoutError, match="expected"):
        recipe.cross_check(b"fake", EXPECTED_CALLS[:4], EXPECTED_CALLS, make_config(3, 16))
    with pytest.raises(DelegateLayoutError, match=r"gate, up, out are \[\[3, 16\], \[3, 16\], \[3, 16\]\], "
                       r"expected \[3, 8\] each"):
        recipe.cross_check(b"fake", EXPECTED_CALLS, EXPECTED_CALLS, make_config(3, 8))
    dims[12] = [3, 8]  # the output alone of another shape
    with pytest.raises(DelegateLayoutError, match="out are"):
        recipe.cross_check(b"fake", EXPECTED_CALLS, EXPECTED_CALLS, make_config(3, 16))
    monkeypatch.setattr(recipe, "delegate_chain", lambda pte: (CHAIN, [12, 11], dims))  # silu a graph output too
    with pytest.raises(DelegateLayoutError, match="would fuse 0 patterns"):
        recipe.cross_check(b"fake", EXPECTED_CALLS, EXPECTED_CALLS, make_config(3, 16))
