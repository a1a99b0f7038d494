"""Op rope end to end: the Llama Rope's export (the .pte's rows are the model's tables, our golden its eager
output within fp32 rounding), the reference kernel and every mutant on SwiftShader, and ExecuTorch's own
rotary_embedding.wgsl from a checkout through Dawn, passing, then failing with a bug planted in it.

The kernel tests run from synthetic fixtures (no torch): only the export test pays for an export.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import SWIFTSHADER_BACKENDS, write_fixture

from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import op_for, registry
from q4gsw.ops.rope.golden import error_model, golden
from q4gsw.ops.rope.mutants import CATALOGUE, REFERENCE, SUITE
from q4gsw.ops.rope.tables import llama3_tables

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
OP = "rope"
TOLERANCE_TOML = 'tolerance = { atol = 1e-6, rtol = 4e-7, justification = "test: a rotation of normal inputs" }'
# name: (seq, heads, head_dim, start_pos, weights, input): a pair count off the 64-wide workgroup, one pair per
# head, and test_rope.py's multi-token shape with its ramps.
CONFIGS = {"t_tail": (3, 3, 6, 5, "llama3", "normal"), "t_one_pair": (9, 5, 2, 1, "llama3", "normal"),
           "t_multi": (5, 8, 64, 0, "upstream", "ramp")}


def test_export_reads_the_models_rows_and_the_golden_is_its_eager_output():
    import torch

    from q4gsw.ops.rope.recipe import llama_rope_step

    seq, heads, head_dim, start = 3, 2, 8, 6
    config = Config(name="t_export", dims={"seq": seq, "heads": heads, "head_dim": head_dim, "start_pos": start},
                    tier="required", suite="rope-test", inputs=("normal",), weights="llama3", weight_seed=0,
                    timeout_s=600.0, tolerance=Tolerance(atol=1e-6, rtol=4e-7, justification="test"), op=OP)
    exported = registry()[OP].export(config, progress=lambda _: None)  # rows_from_pte + cross_check inside
    rows = exported.constants
    assert exported.cross_checked and rows.cos.shape == (seq, head_dim // 2) and rows.start_pos == start
    exact = llama3_tables(seq, head_dim, start)  # the model rounds its angles in fp32: close, not equal
    assert np.allclose(rows.cos, exact.cos, atol=1e-5) and np.allclose(rows.sin, exact.sin, atol=1e-5)
    x = registry()[OP].make_input("normal", config)
    module = llama_rope_step(seq, heads, head_dim, start)
    xq = torch.from_numpy(x)[None]
    eager, _ = module(xq, xq.clone(), torch.tensor([start]))
    err = np.abs(eager[0].numpy().astype(np.float64) - golden(x, rows))
    assert np.all(err <= error_model(x, rows).est)


def write_matrix(folder: Path, kernel_tables: str = "") -> Path:
    """A matrix of CONFIGS with the reference kernel (and `kernel_tables`), and their synthetic fixtures."""
    configs = "".join(f'\n[[config]]\nname = "{name}"\nop = "{OP}"\nsuite = "rope-test"\nseq = {s}\nheads = {h}\n'
                      f'head_dim = {d}\nstart_pos = {p}\nweights = "{w}"\ntier = "required"\ninputs = ["{x}"]\n'
                      f'{TOLERANCE_TOML}\n' for name, (s, h, d, p, w, x) in CONFIGS.items())
    reference = (f'\n[kernel.rope_reference]\nop = "{OP}"\nfile = "{REFERENCE}"\nwhen = "1"\n'
                 f'dispatch = "{SUITE.dispatch}"\noverrides = {{ wg_size = 64 }}\n')
    path = folder / "matrix.toml"
    path.write_text(f'schema_version = 1\n\n{SWIFTSHADER_BACKENDS}{reference}{kernel_tables}{configs}')
    matrix = load_matrix(path)
    for name in CONFIGS:
        config = matrix.config(name)
        write_fixture(folder / "fixtures", config, op_for(config).synthetic_constants(config, config.weight_seed))
    return path


def test_reference_passes_and_every_mutant_is_killed_on_swiftshader(swiftshader_icd, tmp_path):
    from helpers import run_mutants_on_swiftshader

    matrix = write_matrix(tmp_path)
    done, payload = run_mutants_on_swiftshader(tmp_path, matrix, OP, swiftshader_icd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = payload["summary"]
    assert summary["survivors"] == [] and summary["killed"] == len(CATALOGUE)
    # f16 products round |x| <= 0.5 ramps times k/16 exactly: only the normal inputs expose them
    assert "t_multi/ramp" not in summary["killed_by"]["f16_products"]


def test_executorchs_kernel_passes_and_a_bug_planted_in_it_fails(swiftshader_icd, tmp_path):
    """ExecuTorch's own rotary_embedding.wgsl from a checkout (Q4GSW_EXECUTORCH; a skip without one), then the
    same file with the real part's minus turned into a plus."""
    from conftest import run_cli

    checkout = Path(os.environ.get("Q4GSW_EXECUTORCH", "/work/et"))
    source = checkout / registry()[OP].executorch_folder / "rotary_embedding.wgsl"
    if not source.is_file():
        pytest.skip(f"no ExecuTorch checkout with {source.relative_to(checkout)} (set Q4GSW_EXECUTORCH)")
    text = (REPO / "matrix.toml").read_text()
    block = text[text.index("[kernel_set.executorch_rope]"):]
    matrix = write_matrix(tmp_path, "\n" + block[:block.index("[[config]]")])
    folder = tmp_path / "et" / registry()[OP].executorch_folder
    folder.mkdir(parents=True)
    shutil.copy(source, folder / source.name)

    def run(results: str) -> tuple[int, list[dict]]:
        done = run_cli("run", "--executorch", str(tmp_path / "et"), "--backend", "swiftshader-dawn", "--matrix",
                       str(matrix), "--op", OP, "--fixtures", str(tmp_path / "fixtures"), "--cache",
                       str(tmp_path / "cache"), "--results", str(tmp_path / results), env=swiftshader_icd)
        path = tmp_path / results / "results.json"
        assert path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
        return done.returncode, [r for r in json.loads(path.read_text())["results"] if r["status"] != "skip"]

    code, results = run("good")
    assert code == 0 and {r["config"] for r in results} == set(CONFIGS), results
    assert all(r["status"] == "pass" and r["kernel"] == "rotary_embedding" for r in results)
    planted = source.read_text().replace("t_out[base] = x_r * c - x_i * si;", "t_out[base] = x_r * c + x_i * si;")
    assert planted != source.read_text()
    (folder / source.name).write_text(planted)
    code, results = run("planted")
    assert code == 1 and all(r["status"] == "fail" for r in results), results
