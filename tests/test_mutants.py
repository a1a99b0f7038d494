"""Mutation self-test on tiny shapes, and the hard gates (unwritten outputs, guard regions, unsupported).

The GPU tests use synthetic fixtures (random int4 weights packed with q4gsw.unpack.pack_int4, fp64
goldens) so they need neither torch nor an export: a few seconds on SwiftShader.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from q4gsw import export, inputs, mutants
from q4gsw.golden import golden
from q4gsw.unpack import PackedLinear, pack_int4

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "q4gsw" / "kernels" / "mutants" / "reference.wgsl"

MATRIX = '''
schema_version = 1

[backend.swiftshader]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"

[kernel.reference_declared]
file = "{reference}"
when = "M >= 1"
dispatch = "ceil(N / wg_size), M"
overrides = {{ wg_size = 64 }}
{extra_kernels}

[[config]]
name = "t_gemv"
M = 1
K = 1024
N = 64
group_size = 32
tier = "required"
inputs = ["ramp", "outliers"]
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=1024: fp32 error < 2e-6." }}

[[config]]
name = "t_tail"
M = 3
K = 40
N = 72
group_size = 8
tier = "required"
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=40: fp32 error < 1e-6." }}
'''

UNSUPPORTED_KERNELS = '''
[kernel.needs_f16]
file = "{reference}"
when = "M >= 1"
dispatch = "ceil(N / wg_size), M"
overrides = {{ wg_size = 64 }}
requires_features = ["shader-f16"]

[kernel.needs_huge_workgroup]
file = "{reference}"
when = "M >= 1"
dispatch = "ceil(N / wg_size), M"
overrides = {{ wg_size = 64 }}
requires_limits = {{ max_invocations_per_workgroup = 100000 }}
'''


def write_fixture(root: Path, name: str, M: int, K: int, N: int, group_size: int, names: tuple[str, ...]) -> Path:
    """A fixture directory that verify_fixture accepts, built without torch."""
    rng = np.random.default_rng([M, K, N])
    q = rng.integers(-8, 8, size=(N, K))
    scales = (rng.uniform(0.5, 2.0, size=(K // group_size, N)) * 0.01).astype(np.float32)
    packed = PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group_size)
    path = root / name
    path.mkdir(parents=True)
    np.save(path / export.WEIGHT_FILE, packed.weight_packed)
    np.save(path / export.SCALES_FILE, packed.scales)
    input_sha = {}
    for input_name in names:
        x = inputs.make_input(input_name, M, K, 0)
        input_sha[input_name] = hashlib.sha256(x.tobytes()).hexdigest()
        np.save(path / export.golden_file(input_name), golden(x, packed))
    files = {p.name: {"sha256": export.sha256_file(p), "size": p.stat().st_size} for p in sorted(path.iterdir())}
    manifest = {"key": f"synthetic-{name}", "files": files, "input_sha256": input_sha,
                "config": {"M": M, "K": K, "N": N, "group_size": group_size, "weights": "linear_init",
                           "weight_seed": 0, "inputs": list(names)}}
    (path / export.MANIFEST).write_text(json.dumps(manifest))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    fixtures = tmp_path / "fixtures"
    write_fixture(fixtures, "t_gemv", 1, 1024, 64, 32, ("ramp", "outliers"))
    write_fixture(fixtures, "t_tail", 3, 40, 72, 8, ("ramp",))
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(MATRIX.format(reference=REFERENCE, extra_kernels=""))
    return matrix, fixtures


# ------------------------------------------------------------------------------------------------
# Catalogue (no GPU)
# ------------------------------------------------------------------------------------------------


def test_catalogue_derives_distinct_mutants_from_the_reference():
    reference = REFERENCE.read_text()
    sources = mutants.mutant_sources()
    names = [m.name for m in mutants.CATALOGUE]
    assert len(set(names)) == len(names) >= 12
    for name, source in sources.items():
        assert source != reference, name
    assert len(set(sources.values())) == len(sources)
    required = {"nibbles_swapped", "offset_7", "scale_group_next", "scales_transposed", "k_tail_dropped",
                "fp16_accumulation", "row0_reused", "last_n_tile_skipped", "inputs_clamped"}
    assert required <= set(names)


def test_an_edit_that_no_longer_matches_is_an_error():
    with pytest.raises(ValueError, match="occurs 0 times"):
        mutants.mutant_sources(REFERENCE.read_text().replace("let row = m;", "let row = m + 0u;"))


def test_kill_summary_verdict():
    records = [
        {"config": "a", "input": "ramp", "kernel": "reference", "role": "correct", "status": "pass"},
        {"config": "a", "input": "ramp", "kernel": "offset_7", "role": "mutant", "status": "fail"},
        {"config": "a", "input": "ramp", "kernel": "row0_reused", "role": "mutant", "status": "pass"},
    ]
    summary = mutants.kill_summary(records)
    assert summary["survivors"] == ["row0_reused"] and not summary["ok"]
    records[2]["status"] = "fail"
    assert mutants.kill_summary(records)["ok"]
    records[0]["status"] = "fail"  # a correct kernel failing is a false alarm
    assert not mutants.kill_summary(records)["ok"]


# ------------------------------------------------------------------------------------------------
# On SwiftShader
# ------------------------------------------------------------------------------------------------


def _mutants_cli(matrix: Path, fixtures: Path, results: Path, *extra: str):
    from conftest import run_cli

    return run_cli("mutants", "--matrix", str(matrix), "--fixtures", str(fixtures), "--results", str(results),
                   *extra, timeout=300)


@pytest.mark.e2e
def test_every_mutant_is_killed_on_tiny_edge_shapes_and_correct_kernels_pass(swiftshader_env, tiny, tmp_path):
    matrix, fixtures = tiny
    proc = _mutants_cli(matrix, fixtures, tmp_path / "out", "--config", "t_gemv", "--config", "t_tail")
    payload = json.loads((tmp_path / "out" / "mutants.json").read_text())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = payload["summary"]
    assert summary["survivors"] == [] and summary["killed"] == len(mutants.CATALOGUE)
    correct = [r for r in payload["records"] if r["role"] == "correct"]
    assert {r["kernel"] for r in correct} == {"reference", "reference_declared"}
    assert all(r["status"] == "pass" for r in correct)
    killed_by = summary["killed_by"]
    # Shape-specific bugs are killed only where the shape exposes them.
    assert killed_by["k_tail_dropped"] == ["t_tail/ramp"]  # K=40: K % 32 != 0
    assert killed_by["last_n_tile_skipped"] == ["t_tail/ramp"]  # N=72: N % 64 != 0
    assert killed_by["row0_reused"] == ["t_tail/ramp"]  # M=3
    assert killed_by["group_size_32"] == ["t_tail/ramp"]  # group_size 8
    assert killed_by["inputs_clamped"] == ["t_gemv/outliers"]  # only outliers exceed 16
    assert "t_gemv/ramp" in killed_by["offset_7"] and "t_gemv/ramp" in killed_by["nibbles_swapped"]
    assert "15/15 mutants killed" in proc.stdout


@pytest.mark.e2e
def test_a_surviving_mutant_fails_the_self_test(swiftshader_env, tiny, tmp_path):
    matrix, fixtures = tiny
    proc = _mutants_cli(matrix, fixtures, tmp_path / "out", "--config", "t_gemv", "--mutant", "row0_reused",
                        "--mutant", "offset_7", "--no-matrix-kernels")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "SURVIVOR row0_reused" in proc.stdout
    summary = json.loads((tmp_path / "out" / "mutants.json").read_text())["summary"]
    assert summary["survivors"] == ["row0_reused"] and summary["killed"] == 1


@pytest.mark.e2e
def test_unsupported_features_and_limits_are_reported_not_run(swiftshader_env, tmp_path):
    from conftest import run_cli

    fixtures = tmp_path / "fixtures"
    write_fixture(fixtures, "t_gemv", 1, 1024, 64, 32, ("ramp", "outliers"))
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(MATRIX.format(reference=REFERENCE,
                                    extra_kernels=UNSUPPORTED_KERNELS.format(reference=REFERENCE)))
    proc = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--config", "t_gemv",
                   "--fixtures", str(fixtures), "--results", str(tmp_path / "res"), timeout=300)
    results = json.loads((tmp_path / "res" / "results.json").read_text())["results"]
    by_kernel = {}
    for r in results:
        by_kernel.setdefault(r["kernel"], set()).add(r["status"])
    assert by_kernel["reference_declared"] == {"pass"}, proc.stdout[-2000:]
    assert by_kernel["needs_f16"] == {"unsupported"}
    assert by_kernel["needs_huge_workgroup"] == {"unsupported"}
    messages = " ".join(r["message"] for r in results if r["status"] == "unsupported")
    assert "shader-f16" in messages and "max_invocations_per_workgroup" in messages
    assert proc.returncode == 0  # unsupported is not a failure


GATES_SCRIPT = r'''
import json, sys
import numpy as np
from q4gsw import gpu
from q4gsw.matrix import load_matrix
from q4gsw.unpack import PackedLinear, pack_int4

backend = load_matrix(sys.argv[1]).backend("swiftshader")
adapter, info = gpu.select_adapter(backend)
session = gpu.Session(adapter, info)
M, K, N = 3, 64, 40
packed = PackedLinear(pack_int4(np.zeros((N, K), dtype=np.int8)), np.ones((2, N), np.float32), 32)
x = np.ones((M, K), np.float32)
head = open(sys.argv[2]).read().split("override wg_size")[0]
kernels = {
    # Writes the binding's length into all outputs but the last, and 12345 at 300 words past the end.
    "length": head + """
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let count = params.M * params.N;
  if (gid.x + 1u < count) { t_out[gid.x] = f32(arrayLength(&t_out)); }
  if (gid.x == count) { t_out[count + 299u] = 12345.0; }
}""",
    # Leaves the last output unwritten.
    "skip_last": head + """
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x + 1u < params.M * params.N) { t_out[gid.x] = 0.0; }
}""",
}
out = {}
for name, source in kernels.items():
    run = session.run(source, name, {}, (4,), x, packed)
    out[name] = {"output": run.output.tolist(), "guards": run.guard_violations}
print(json.dumps(out))
'''


@pytest.mark.e2e
def test_outputs_start_as_nan_and_the_binding_cannot_reach_the_guards(swiftshader_env, tiny, tmp_path):
    """Hard gates: every output word starts as the guard NaN (an unwritten output fails as non-finite),
    the output binding is exactly M*N words (the guard words lie outside it), and an index past the end
    is confined to the binding by WGSL's robust access (clamped onto an output the comparison sees, or
    dropped), so the guard check is a backstop for drivers without robust buffer access."""
    import os
    import subprocess
    import sys

    from q4gsw.compare import compare
    from q4gsw.matrix import Tolerance

    matrix, _ = tiny
    proc = subprocess.run([sys.executable, "-c", GATES_SCRIPT, str(matrix), str(REFERENCE)], capture_output=True,
                          text=True, env={**os.environ, **swiftshader_env}, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    length = np.array(out["length"]["output"])
    assert out["length"]["guards"] == []
    assert (length.flat[:-1] == 3 * 40).all()
    # The out-of-range write never escapes the binding: clamped onto the last output or dropped (NaN).
    assert length.flat[-1] == 12345.0 or np.isnan(length.flat[-1])
    skipped = np.array(out["skip_last"]["output"])
    assert np.isnan(skipped.flat[-1]) and out["skip_last"]["guards"] == []
    verdict = compare(skipped.astype(np.float32), np.zeros((3, 40)), Tolerance(1e-5, 1e-4, "test"))
    assert not verdict.passed and verdict.nonfinite == 1 and verdict.first_nonfinite == (2, 39)
