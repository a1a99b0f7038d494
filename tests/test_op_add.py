"""Op add (q4gsw/ops/add/): ExecuTorch's aten.add.Tensor, the residual add, elementwise and broadcast.

Offline: the operand packing x[2, rows, width], the exact fp64 golden and the one-rounding error model (expected
values by hand), ExecuTorch's TensorMeta uniforms, the inputs' exact cancellations, shape rules, the bindings in
ExecuTorch's layout, the dispatch folds, the matrix block's tolerances and every mutant's edits. End to end (e2e):
the export (one aten.add.Tensor, alpha 1, the operand dims), the reference kernel and every mutant on SwiftShader
through `q4gsw mutants`, and ExecuTorch's binary_add.wgsl through `run --executorch` from a copy of the checkout,
passing, then failing with a bug planted in it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from q4gsw.matrix.expressions import evaluate, split_dispatch
from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import expression_names, registry
from q4gsw.ops.add.golden import AddGraph, cpu_reference, error_model, golden, operands
from q4gsw.ops.add.inputs import make_operands
from q4gsw.ops.add.mutants import CATALOGUE, REFERENCE
from q4gsw.ops.error_model import gamma
from q4gsw.ops.tensor_meta import tensor_meta

REPO = Path(__file__).resolve().parent.parent
OP = registry()["add"]
TOLERANCE = Tolerance(atol=1.18e-38, rtol=2.4e-7, justification="test: one correctly rounded fp32 addition")


def make_config(rows: int, width: int, b_rows: int | None = None, b_width: int | None = None,
                inputs: tuple[str, ...] = ("normal",), name: str = "t") -> Config:
    dims = {"rows": rows, "width": width, "b_rows": rows if b_rows is None else b_rows,
            "b_width": width if b_width is None else b_width}
    return Config(name=name, dims=dims, tier="required", suite="add-test", inputs=inputs, weights="none",
                  weight_seed=0, timeout_s=300.0, tolerance=TOLERANCE, op="add")


# ---- golden, operands, error model -------------------------------------------------------------------------------


def test_golden_broadcasts_b_as_pytorch_does():
    x = np.zeros((2, 2, 3), dtype=np.float32)
    x[0] = [[1, 2, 3], [4, 5, 6]]
    x[1, :, 0] = [10, 20]  # b = [[10], [20]]: one value per row
    a, b = operands(x, 2, 1)
    assert b.tolist() == [[10.0], [20.0]]
    assert golden(a, b, 1.0).tolist() == [[11, 12, 13], [24, 25, 26]]
    x[1, 0] = [100, 200, 300]  # b = [[100, 200, 300]]: one row for every row
    a, b = operands(x, 1, 3)
    assert golden(a, b, 1.0).tolist() == [[101, 202, 303], [104, 205, 306]]
    assert golden(a, b, 2.0).tolist() == [[201, 402, 603], [204, 405, 606]]


def test_golden_is_exact_where_fp32_rounds_and_the_error_model_bounds_that_rounding():
    a = np.array([[1.0, 3.0, 1.0]], dtype=np.float32)
    b = np.array([[2.0**-25, 2.0**-23, -1.0]], dtype=np.float32)
    g = golden(a, b, 1.0)
    assert g.tolist() == [[1 + 2.0**-25, 3 + 2.0**-23, 0.0]]  # by hand: fp64 holds each sum exactly
    y = cpu_reference(a, b, 1.0)
    assert y.tolist() == [[1.0, 3.0, 0.0]]  # 1 + 2^-25 and 3 + 2^-23 both round back (ties to even)
    model = error_model(a, b, 1.0)
    assert model.K == 0 and np.allclose(model.worst, gamma(1) * np.abs(g)) and np.allclose(model.est, model.worst)
    assert np.all(np.abs(y - g) <= model.worst)
    assert model.step.tolist() == [[2.0**-25, 2.0**-23, 1.0]]  # |b|: what losing b changes


def test_operands_refuse_what_is_not_x_2_rows_width_or_does_not_broadcast():
    with pytest.raises(ValueError, match=r"x\[2, rows, width\]"):
        operands(np.zeros((3, 2, 2), np.float32), 2, 2)
    with pytest.raises(ValueError, match="does not broadcast"):
        operands(np.zeros((2, 4, 4), np.float32), 2, 4)


def test_tensor_meta_is_executorchs_broadcast_layout():
    # fill_tensor_meta_broadcast, by hand: right-aligned, contiguous strides, unused slots size 1 stride 0.
    assert tensor_meta((4, 1), 2).tolist() == [2, 4, 0, 0, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert tensor_meta((1, 4), 3).tolist() == [3, 4, 0, 0, 1, 1, 4, 1, 1, 1, 1, 1, 0, 4, 1, 0, 0, 0, 0, 0]
    assert tensor_meta((2, 3), 2).nbytes == 80  # sizeof(TensorMeta), std140
    with pytest.raises(ValueError):
        tensor_meta((1, 2, 3), 2)


# ---- inputs ------------------------------------------------------------------------------------------------------


def test_inputs_pack_a_and_b_and_outliers_cancel_and_absorb_exactly():
    x = make_operands("outliers", 8, 64, 0)
    assert x.shape == (2, 8, 64) and x.dtype == np.float32
    a, b = x[0].reshape(-1), x[1].reshape(-1)
    i = np.arange(a.size)
    assert np.all(a[i % 13 == 0] + b[i % 13 == 0] == 0)  # exact cancellation
    absorbed = (i % 7 == 3) & (i % 13 != 0)
    assert np.all((a[absorbed] + b[absorbed]) == a[absorbed]) and np.all(b[absorbed] != 0)  # rounds back to a
    assert np.median(np.abs(x[0, 4])) > 500 * np.median(np.abs(x[0, 3]))  # the outlier row (rows // 2): 1024x
    assert np.array_equal(make_operands("outliers", 8, 64, 0), x)  # reproducible from the seed
    ramp = make_operands("ramp", 2, 17, 0)
    assert ramp[1, 0, 0] == ramp[0, 0, 1] and ramp[1, 1, 16] == ramp[0, 0, 0]  # b is a one element on
    with pytest.raises(ValueError, match="no input"):
        make_operands("tiny", 1, 4, 0)


# ---- the Op ------------------------------------------------------------------------------------------------------


def test_shape_problems_name_the_key_and_the_fix():
    assert OP.shape_problems(make_config(4, 4, 4, 1)) == []
    (problem,) = OP.shape_problems(make_config(4, 4, 2, 4))
    assert problem.key == "b_rows" and "1 (broadcast)" in problem.fix
    (problem,) = OP.shape_problems(make_config((1 << 16) + 1, 1 << 13))
    assert problem.key == "rows" and "2.0 GiB" in problem.problem


def test_bindings_are_binary_adds_layout():
    x = make_operands("normal", 3, 5, 0)
    graph = AddGraph(alpha=1.0, b_shape=(1, 5))
    bindings = OP.bindings(x, graph)
    assert bindings.output_index == 2 and bindings.output_shape == (3, 5)
    by_index = {b.index: b for b in bindings.inputs}
    assert sorted(by_index) == [0, 1, 3, 4, 5]
    assert np.array_equal(by_index[0].data, x[0].reshape(-1)) and np.array_equal(by_index[1].data, x[1, 0])
    assert [by_index[i].kind for i in (3, 4, 5)] == ["uniform"] * 3
    assert by_index[5].data[:2].tolist() == [2, 5] and by_index[3].data[:2].tolist() == [2, 15]
    # TensorMeta {ndim, numel, pad x2, sizes[8], strides[8]}: out and a [3, 5], b [1, 5] (its row stride 5)
    same = [2, 15, 0, 0, 3, 5, 1, 1, 1, 1, 1, 1, 5, 1, 0, 0, 0, 0, 0, 0]
    assert by_index[3].data.tolist() == same and by_index[4].data.tolist() == same
    assert by_index[5].data.tolist() == [2, 5, 0, 0, 1, 5, 1, 1, 1, 1, 1, 1, 5, 1, 0, 0, 0, 0, 0, 0]
    files = OP.constants_to_files(graph)
    assert OP.constants_from_files(files, make_config(3, 5, 1, 5)) == graph
    assert OP.synthetic_constants(make_config(3, 5, 1, 5), 0) == graph


def dispatch(kernel_table: str, rows: int, width: int, wg_size: int, max_dim: int = 65535) -> list[int]:
    config = make_config(rows, width)
    names = {**expression_names(config), "wg_size": wg_size, "max_workgroups_per_dimension": max_dim}
    return [int(evaluate(part, names)) for part in split_dispatch(kernel_table)]


def test_executorchs_dispatch_folds_as_compute_2d_workgroup_count():
    matrix = load_matrix(REPO / "matrix.toml")
    (kernel,) = matrix.kernel_sets["executorch_add"].kernels
    text = ", ".join(kernel.dispatch)
    assert dispatch(text, 512, 2048, 256) == [4096, 1]
    # 8192 x 2048 / 256 = 65536 workgroups, one over the limit: near-square ceil(sqrt(65536)) = 256, 65536 / 256.
    assert dispatch(text, 8192, 2048, 256) == [256, 256]
    # 65537 workgroups: x = ceil(sqrt(65537)) = 257, y = ceil(65537 / 257) = 256 (257 * 255 = 65535 < 65537).
    assert dispatch(text, 65537, 256, 256) == [257, 256]


def test_every_add_config_has_the_one_rounding_tolerance():
    matrix = load_matrix(REPO / "matrix.toml")
    configs = [c for c in matrix.configs if c.op == "add"]
    assert {c.suite for c in configs} == {"add-llama", "add-edges"}
    assert {c.dims["rows"] for c in configs if c.suite == "add-llama" and c.tier == "required"} == {1, 128, 512}
    assert all((c.tolerance.atol, c.tolerance.rtol) == (1.18e-38, 2.4e-7) for c in configs)
    assert 2.4e-7 / 2.0**-24 >= 3  # the audit's margin over the one-rounding bound


def test_every_mutant_edits_the_reference_once():
    reference = REFERENCE.read_text()
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE)
    for mutant in CATALOGUE:
        assert mutant.source(reference) != reference, mutant.name


# ---- e2e ---------------------------------------------------------------------------------------------------------

TOL_TOML = 'tolerance = { atol = 1.18e-38, rtol = 2.4e-7, justification = "one correctly rounded fp32 addition" }'
# name: (rows, width, b_rows, b_width, inputs): a tail off every workgroup size, a broadcast b (one value per row:
# b's running stride differs from out's, so it shows every broadcast mutant), a folded dispatch (the mutation
# suite's wg_size 4: 65538 workgroups)
E2E = {"t_same": (7, 300, 7, 300, '["outliers"]'), "t_col": (6, 33, 6, 1, '["ramp"]'),
       "t_fold": (2, 131076, 2, 131076, '["normal"]')}


def e2e_matrix(folder: Path, tables: str) -> Path:
    from elementwise_fixtures import write_matrix

    configs = "".join(f'\n[[config]]\nname = "{n}"\nop = "add"\nsuite = "add-test"\nrows = {r}\nwidth = {w}\n'
                      f'b_rows = {br}\nb_width = {bw}\ntier = "required"\ninputs = {x}\n{TOL_TOML}\n'
                      for n, (r, w, br, bw, x) in E2E.items())
    return write_matrix(folder, tables, configs)


@pytest.mark.e2e
def test_reference_passes_and_every_mutant_is_killed_on_swiftshader(swiftshader_icd, tmp_path):
    from elementwise_fixtures import matrix_block
    from helpers import run_mutants_on_swiftshader

    matrix = e2e_matrix(tmp_path, matrix_block(REPO, "[kernel.add_reference]"))
    done, payload = run_mutants_on_swiftshader(tmp_path, matrix, "add", swiftshader_icd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = payload["summary"]
    assert summary["survivors"] == [] and summary["killed"] == len(CATALOGUE)
    assert set(summary["killed_by"]["fold_stride_wg"]) == {"t_fold/normal"}
    assert "t_same/outliers" not in summary["killed_by"]["broadcast_ignored"]  # no broadcast, no difference


def executorch_checkout() -> Path:
    checkout = Path(os.environ.get("Q4GSW_EXECUTORCH", "/work/et"))
    if not (checkout / OP.executorch_folder / "binary_add.wgsl").is_file():
        pytest.skip(f"no ExecuTorch checkout with {OP.executorch_folder} (set Q4GSW_EXECUTORCH)")
    return checkout


@pytest.mark.e2e
def test_executorchs_kernel_passes_and_fails_with_a_planted_bug(swiftshader_icd, tmp_path):
    """ExecuTorch's own binary_add.wgsl, copied from the checkout into a temporary tree (never into q4gsw)."""
    from conftest import run_cli
    from elementwise_fixtures import matrix_block

    tree = tmp_path / "executorch"
    shutil.copytree(executorch_checkout() / OP.executorch_folder, tree / OP.executorch_folder)
    matrix = e2e_matrix(tmp_path, matrix_block(REPO, "[kernel.add_reference]"))
    kernel = tree / OP.executorch_folder / "binary_add.wgsl"

    def run(results: str) -> tuple[int, dict[str, dict]]:
        done = run_cli("run", "--in-process", "--executorch", str(tree), "--backend", "swiftshader-dawn", "--matrix",
                       str(matrix), "--config", "t_same", "--config", "t_col", "--fixtures", str(tmp_path / "fixtures"),
                       "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / results), env=swiftshader_icd)
        path = tmp_path / results / "results.json"
        assert path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
        results_ = json.loads(path.read_text())["results"]
        return done.returncode, {f"{r['config']}/{r['input']}": r for r in results_ if r["status"] != "skip"}

    code, results = run("good")
    assert code == 0 and all(r["status"] == "pass" and r["kernel"] == "binary_add" for r in results.values())
    assert len(results) == 2 and results["t_same/outliers"]["workgroups"][:2] == [math.ceil(2100 / 256), 1]
    # The broadcast path: the clamp of a size-1 coordinate dropped (every coordinate read as is).
    kernel.write_text(kernel.read_text().replace("min(coord, in2_meta.sizes[d >> 2u][d & 3u] - 1u)", "coord"))
    code, results = run("planted")
    assert code == 1
    assert results["t_col/ramp"]["status"] == "fail" and results["t_same/outliers"]["status"] == "pass"


def test_cross_check_refuses_other_operand_dims_or_another_alpha(monkeypatch):
    from q4gsw.export.pte import DelegateLayoutError
    from q4gsw.ops.add import recipe

    monkeypatch.setattr(recipe, "operand_dims", lambda pte: [[4, 8], [1, 8], [4, 8]])
    recipe.cross_check(b"fake", AddGraph(alpha=1.0, b_shape=(1, 8)), 1.0, make_config(4, 8, 1, 8))
    with pytest.raises(DelegateLayoutError, match=r"alpha 2.0, the module 1.0"):
        recipe.cross_check(b"fake", AddGraph(alpha=2.0, b_shape=(1, 8)), 1.0, make_config(4, 8, 1, 8))
    with pytest.raises(DelegateLayoutError, match=r"operands \[\[4, 8\], \[1, 8\], \[4, 8\]\], expected "
                       r"\[\[4, 8\], \[4, 1\], \[4, 8\]\]"):
        recipe.cross_check(b"fake", AddGraph(alpha=1.0, b_shape=(4, 1)), 1.0, make_config(4, 8, 4, 1))


def test_graph_from_pte_reads_alpha_and_bs_dims_and_refuses_others(monkeypatch):
    """ExecuTorch's VkGraph types stood in for (importing them costs the test process torch: ~13 CPU s)."""
    import sys
    from types import ModuleType, SimpleNamespace

    from q4gsw.export import pte
    from q4gsw.export.pte import DelegateLayoutError
    from q4gsw.ops.add.recipe import ADD_OPERATOR, graph_from_pte

    schema = ModuleType("vulkan_graph_schema")
    schema.Int = type("Int", (SimpleNamespace,), {})
    schema.Double = type("Double", (SimpleNamespace,), {})
    monkeypatch.setitem(sys.modules, "executorch.backends.vulkan.serialization.vulkan_graph_schema", schema)

    def reader(alpha: object, b_dims: list[int]) -> object:
        values = {0: SimpleNamespace(dims=[4, 8]), 1: SimpleNamespace(dims=b_dims), 2: alpha,
                  3: SimpleNamespace(dims=[4, 8])}
        delegate = SimpleNamespace(args=lambda operator: [0, 1, 2, 3] if operator == ADD_OPERATOR else [],
                                   value=values.__getitem__)
        return lambda data: delegate

    for alpha, b_dims, expected in ((schema.Int(int_val=2), [1, 8], AddGraph(alpha=2.0, b_shape=(1, 8))),
                                    (schema.Double(double_val=0.5), [4, 1], AddGraph(alpha=0.5, b_shape=(4, 1)))):
        monkeypatch.setattr(pte, "read_delegate", reader(alpha, b_dims))
        assert graph_from_pte(b"fake") == expected
    for alpha, b_dims, words in ((SimpleNamespace(int_val=1), [1, 8], "alpha is a SimpleNamespace, not an Int or a "
                                                                      "Double"),
                                 (schema.Int(int_val=1), [1, 1, 8], "second operand has dims [1, 1, 8]")):
        monkeypatch.setattr(pte, "read_delegate", reader(alpha, b_dims))
        with pytest.raises(DelegateLayoutError, match=re.escape(words)):
            graph_from_pte(b"fake")
