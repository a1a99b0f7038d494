"""Op rms_norm end to end, kept small (SwiftShader, a few seconds each): the real export against the wheel's own
modules (Llama's RMSNorm, test_rms_norm.py's patterns), every mutant killed with the reference passing, and the
ExecuTorch kernel set's declaration (vec4 and scalar routes) through `run --executorch` on a stand-in tree, where a
planted bug turns the pass into a failure."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import SWIFTSHADER_BACKENDS, write_fixture

from q4gsw.matrix.load import load_matrix
from q4gsw.ops.rms_norm import RmsNorm
from q4gsw.ops.rms_norm.golden import golden, relative_terms
from q4gsw.ops.rms_norm.inputs import make_input
from q4gsw.ops.rms_norm.mutants import CATALOGUE, REFERENCE

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
OP = RmsNorm()
GENERATOR = "backends/webgpu/scripts/gen_wgsl_headers.py"


def test_export_holds_the_llama_modules_weight_and_eps_and_our_golden_is_its_output():
    torch = pytest.importorskip("torch")
    norm = pytest.importorskip("executorch.examples.models.llama.norm")
    from q4gsw.matrix.values import Config, Tolerance

    config = Config(name="rms_export", dims={"rows": 3, "width": 40}, tier="required", suite="t",
                    inputs=("outliers",), weights="llama", weight_seed=5, timeout_s=60.0,
                    tolerance=Tolerance(atol=0.0, rtol=1e-5, justification="t"), op="rms_norm")
    exported = OP.export(config, progress=lambda _: None)
    torch.manual_seed(5)
    module = norm.RMSNorm(40, eps=1e-5)
    with torch.no_grad():
        module.weight.normal_(1.0, 0.5)
    assert exported.cross_checked and exported.constants.eps == 1e-5
    assert np.array_equal(exported.constants.weight, module.weight.detach().numpy())
    assert not np.all(exported.constants.weight == 1.0)
    x = make_input("outliers", 3, 40, 5)
    y32 = module(torch.from_numpy(x)).detach().numpy().astype(np.float64)
    g = golden(x, exported.constants)
    assert np.all(np.abs(y32 - g) <= np.abs(g) * relative_terms(x, 1e-5)["worst"][:, None] + 1e-38)


def test_upstreams_input_patterns_are_its_own():
    torch = pytest.importorskip("torch")
    upstream = pytest.importorskip("executorch.backends.webgpu.test.ops.test_rms_norm")
    patterns = (("upstream_ramp", upstream._ramp((7, 896))), ("distinct_rows", upstream._distinct_rows((5, 256))),
                ("mixed_sign", upstream._mixed_sign((4, 128))))
    for name, theirs in patterns:
        ours, theirs = make_input(name, *theirs.shape, 0), theirs.numpy()
        # numpy's and torch's linspace differ in the last bit of the ramp's step: 2^-22 of the ramp's largest |x|
        largest = np.abs(theirs).max(axis=1, keepdims=True) if name == "distinct_rows" else np.abs(theirs).max()
        assert np.all(np.abs(ours - theirs) <= 2**-22 * largest), name
    ours = OP.synthetic_constants(_config(1, 128, weights="zeros_neg"), 0).weight
    theirs = upstream._weight_zeros_neg(128).numpy()
    assert np.all(np.abs(ours - theirs) <= 2**-23) and np.array_equal(ours == 0, theirs == 0)
    del torch


def _config(rows: int, width: int, weights: str = "linspace"):
    from q4gsw.matrix.values import Config, Tolerance

    return Config(name="c", dims={"rows": rows, "width": width}, tier="required", suite="t", inputs=("normal",),
                  weights=weights, weight_seed=0, timeout_s=60.0,
                  tolerance=Tolerance(atol=0.0, rtol=1e-5, justification="t"), op="rms_norm")


# name: rows, width, weights, input. mixed_sign has an eps-dominated row (eps bugs). t_vec4 routes to ExecuTorch's
# vec4 variant; t_odd to its scalar one and kills every mutant alone: width 190 % 4 != 0 over several rows (the vec4
# habits), and ceil(190 / 64) = 3 leaves the 64th invocation one element (a reduction one partial short).
GPU_CONFIGS = {"t_vec4": (4, 128, "linspace", "mixed_sign"), "t_odd": (4, 190, "llama", "mixed_sign")}
TOLERANCE = 'tolerance = { atol = 1.18e-38, rtol = 4e-6, justification = "width <= 190: est <= 1e-6 (golden.py)" }'


def write_gpu_matrix(folder: Path, kernel_tables: str = "") -> Path:
    configs = "".join(f'\n[[config]]\nname = "{name}"\nop = "rms_norm"\nsuite = "rms-test"\nrows = {rows}\n'
                      f'width = {width}\nweights = "{weights}"\ntier = "required"\ninputs = ["{x}"]\n{TOLERANCE}\n'
                      for name, (rows, width, weights, x) in GPU_CONFIGS.items())
    reference = (f'\n[kernel.rms_norm_reference]\nop = "rms_norm"\nfile = "{REFERENCE}"\nwhen = "1"\n'
                 f'dispatch = "rows"\noverrides = {{ wg_size = 64 }}\n')
    path = folder / "matrix.toml"
    path.write_text(f'schema_version = 1\n\n{SWIFTSHADER_BACKENDS}{reference}{kernel_tables}{configs}')
    matrix = load_matrix(path)
    for name in GPU_CONFIGS:
        config = matrix.config(name)
        write_fixture(folder / "fixtures", config, OP.synthetic_constants(config, 7))
    return path


def test_reference_passes_and_every_mutant_is_killed_on_swiftshader(swiftshader_icd, tmp_path):
    from helpers import run_mutants_on_swiftshader

    matrix = write_gpu_matrix(tmp_path)
    done, payload = run_mutants_on_swiftshader(tmp_path, matrix, "rms_norm", swiftshader_icd, "--config", "t_odd")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = payload["summary"]
    assert summary["survivors"] == [] and summary["killed"] == len(CATALOGUE)
    correct = [r for r in payload["records"] if r["role"] == "correct"]
    assert correct and all(r["status"] == "pass" and r["headroom"] <= 0.3 for r in correct), correct
    assert {r["config"] for r in payload["records"]} == {"t_odd"}


# A stand-in for ExecuTorch's rms_norm template, written for this test (not ExecuTorch's): q4gsw's reference with
# the template's two variants (rms_norm.yaml: VEC 1 and 4, named as the generator names them).
STAND_IN_YAML = '''rms_norm:
  parameter_names_with_default_values:
    DTYPE: float
    VEC: 1
  generate_variant_forall:
    VEC:
      - VALUE: 1
        SUFFIX: ""
      - VALUE: 4
        SUFFIX: vec4
  shader_variants:
    - NAME: rms_norm
'''


def test_the_kernel_set_routes_both_variants_and_a_planted_bug_fails(swiftshader_icd, tmp_path):
    from conftest import run_cli
    from test_executorch import wheel_generator

    text = (REPO / "matrix.toml").read_text()
    block = text[text.index("[kernel_set.executorch_rms_norm]"):]
    matrix = write_gpu_matrix(tmp_path, "\n" + block[:block.index("[[config]]")])
    tree = tmp_path / "executorch"
    folder = tree / OP.executorch_folder
    folder.mkdir(parents=True)
    (tree / GENERATOR).parent.mkdir(parents=True)
    shutil.copyfile(wheel_generator(), tree / GENERATOR)
    (folder / "rms_norm.yaml").write_text(STAND_IN_YAML)
    kernel = folder / "rms_norm.wgsl"

    def run(results: str, *select: str) -> tuple[int, list[dict]]:
        done = run_cli("run", "--executorch", str(tree), "--backend", "swiftshader-dawn", "--matrix", str(matrix),
                       *(select or ("--op", "rms_norm")), "--fixtures", str(tmp_path / "fixtures"), "--cache",
                       str(tmp_path / "cache"), "--results", str(tmp_path / results), env=swiftshader_icd)
        path = tmp_path / results / "results.json"
        assert path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
        return done.returncode, [r for r in json.loads(path.read_text())["results"] if r["status"] != "skip"]

    kernel.write_text(REFERENCE.read_text())
    code, results = run("good")
    assert code == 0 and all(r["status"] == "pass" for r in results), results
    assert {r["config"]: r["kernel"] for r in results} == {"t_vec4": "rms_norm_vec4", "t_odd": "rms_norm"}
    assert all(r["workgroups"][0] == GPU_CONFIGS[r["config"]][0] for r in results)

    kernel.write_text(REFERENCE.read_text().replace("total / f32(width)", "total / f32(width - 1u)"))
    code, results = run("planted", "--config", "t_odd")
    assert code == 1 and len(results) == 1 and results[0]["status"] == "fail", results
    assert math.isfinite(results[0]["errors"]["max_abs"])
