"""Mutation self-test on tiny shapes, and the hard gates (unwritten outputs, guard regions, unsupported).

The GPU tests use synthetic fixtures (tests/helpers.write_fixture: random int4 weights packed with
pack_int4 of the linear_q4gsw op, fp64 goldens) so they need neither torch nor an export: a few seconds on
SwiftShader.
Everything runs through the engine: `q4gsw mutants` / `q4gsw run` as a user would, and the gate kernels as
Cases handed to q4gsw.run.stages.run_selection.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import backend_unavailable, make_config, random_packed, run_cases, write_fixture

from q4gsw.cases import Case
from q4gsw.commands import mutants
from q4gsw.matrix.load import Config, Tolerance, load_matrix, make_kernel
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "q4gsw" / "ops" / "linear_q4gsw" / "kernels" / "mutants" / "reference.wgsl"

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


def write_tiny_fixture(folder: Path, config: Config) -> Path:
    """The fixture of one of MATRIX's configs: random weights over all 16 nibbles, seeded by the shape."""
    rng = np.random.default_rng([config.dims["M"], config.dims["K"], config.dims["N"]])
    d = config.dims
    return write_fixture(folder, config, random_packed(d["N"], d["K"], d["group_size"], rng))


def write_tiny(tmp_path: Path, extra_kernels: str = "", configs: tuple[str, ...] = ("t_gemv", "t_tail")
               ) -> tuple[Path, Path]:
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(MATRIX.format(reference=REFERENCE, extra_kernels=extra_kernels))
    loaded = load_matrix(matrix)
    fixtures = tmp_path / "fixtures"
    for name in configs:
        write_tiny_fixture(fixtures, loaded.config(name))
    return matrix, fixtures


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    return write_tiny(tmp_path)


# ------------------------------------------------------------------------------------------------
# Catalogue (no GPU)
# ------------------------------------------------------------------------------------------------


def test_catalogue_derives_distinct_mutants_from_the_reference():
    reference = REFERENCE.read_text()
    sources = mutants.mutant_sources()
    names = [m.name for m in mutants.suite_of().mutants]
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


def _embedding_records(adapters: dict[str, str]) -> list[dict[str, str]]:
    """offset_folded surviving on each of `adapters` (case -> adapter name), token_plus_one killed everywhere."""
    records = []
    for case, adapter in adapters.items():
        for kernel, role, status in (("reference", "correct", "pass"), ("offset_folded", "mutant", "pass"),
                                     ("token_plus_one", "mutant", "fail")):
            records.append({"config": case, "input": "edges", "kernel": kernel, "role": role, "status": status,
                            "adapter": adapter})
    return records


def test_a_survivor_only_where_the_catalogue_says_it_is_equivalent_is_no_gap():
    """embedding's offset_folded (n * s - 8 * s) computes the reference's bits where the compiler contracts it into
    one fma (NVIDIA): surviving there is reported as equivalent, with the reason; anywhere else it is a survivor."""
    summary = mutants.kill_summary(_embedding_records({"a": "NVIDIA H100 80GB HBM3"}), "embedding_q4gsw")
    assert summary["survivors"] == [] and list(summary["equivalent"]) == ["offset_folded"]
    assert "fma(n, s, -(8 * s))" in summary["equivalent"]["offset_folded"]
    assert summary["killed"] == 1 and summary["mutants"] == 2 and summary["ok"]
    for adapters in ({"a": "llvmpipe (LLVM 15.0.6, 256 bits)"},
                     {"a": "NVIDIA H100 80GB HBM3", "b": "SwiftShader Device (Subzero)"}):
        summary = mutants.kill_summary(_embedding_records(adapters), "embedding_q4gsw")
        assert summary["survivors"] == ["offset_folded"] and summary["equivalent"] == {} and not summary["ok"]


def test_embedding_fp16_output_rounds_with_quantize_to_f16():
    """NVIDIA's compiler removes an unpack2x16float(pack2x16float(x)) round trip (the f32 value survives);
    quantizeToF16 is SPIR-V's OpQuantizeToF16, which it keeps."""
    sources = mutants.mutant_sources(op_name="embedding_q4gsw")
    assert "return quantizeToF16(q * s);" in sources["fp16_output"] and "pack2x16float" not in sources["fp16_output"]


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
    assert summary["survivors"] == [] and summary["killed"] == len(mutants.suite_of().mutants)
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

    matrix, fixtures = write_tiny(tmp_path, UNSUPPORTED_KERNELS.format(reference=REFERENCE), configs=("t_gemv",))
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


def _gate_kernels() -> dict[str, str]:
    head = REFERENCE.read_text().split("override wg_size")[0]  # the bindings, without the reference's entry point
    return {
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


@pytest.mark.e2e
def test_outputs_start_as_nan_and_the_binding_cannot_reach_the_guards(swiftshader_env, tiny, tmp_path):
    """Hard gates: every output word starts as the guard NaN (an unwritten output fails as non-finite),
    the output binding is exactly M*N words (the guard words lie outside it), and an index past the end
    is confined to the binding by WGSL's robust access (clamped onto an output the comparison sees, or
    dropped), so the guard check is a backstop for drivers without robust buffer access."""
    matrix_path, _ = tiny
    backend = load_matrix(matrix_path).backend("swiftshader")
    M, K, N = 3, 64, 40
    packed = PackedLinear(pack_int4(np.zeros((N, K), dtype=np.int8)), np.ones((2, N), np.float32), 32)
    tolerance = Tolerance(1e-5, 1e-4, "test")
    # The golden each gate kernel is judged against: the binding's length (M*N words), and zeros.
    goldens = {"length": np.full((M, N), float(M * N)), "skip_last": np.zeros((M, N))}
    cases = []
    for name, source in _gate_kernels().items():
        config = make_config(f"gate_{name}", M, K, N, 32, ("ramp",), tolerance=tolerance)
        write_fixture(tmp_path / "gates", config, packed, goldens={"ramp": goldens[name]})
        kernel = make_kernel(name, str(REFERENCE), "4", text=source, origin=f"test:{name}")
        cases.append(Case(config=config, kernel=kernel, input="ramp", backend=backend, tolerance=tolerance))
    results = run_cases(cases, tmp_path / "gates", tmp_path / "cache", matrix_path=matrix_path)
    assert not backend_unavailable(results), next(iter(results.values())).message
    length, skipped = (results[case.id] for case in cases)
    assert length.errors is not None and skipped.errors is not None, (length.message, skipped.message)
    # All outputs but the last hold arrayLength(&t_out) == M*N: the binding is exactly the output.
    assert length.errors.guard_violations == 0
    assert length.errors.mismatches == 1 and length.errors.worst_index == (2, 39), length.message
    # The out-of-range write never escapes the binding: clamped onto the last output or dropped (NaN).
    if length.errors.nonfinite:
        assert length.errors.first_nonfinite == (2, 39)
    else:
        assert length.message.startswith(f"1/{M * N} elements out of tolerance; worst (m, n) = (2, 39): got 12345,")
    assert length.status == "fail"
    assert skipped.status == "fail" and skipped.errors.guard_violations == 0
    assert skipped.errors.nonfinite == 1 and skipped.errors.first_nonfinite == (2, 39)
    assert skipped.message == "1 non-finite outputs, first at (m, n) = (2, 39)"


def test_op_all_runs_every_op_with_a_suite_and_the_worst_verdict_wins(monkeypatch, tmp_path, capsys):
    """`mutants --op all` (nox -s mutants): every op with a suite, each into RESULTS/<op>/, whatever an earlier op
    found; a suite is optional, and an op without one is said and left out."""
    import q4gsw.ops
    from q4gsw.ops import registry

    shipped = registry()
    without_suite = SimpleNamespace(mutation_suite=lambda: None)
    monkeypatch.setattr(q4gsw.ops, "registry", lambda: {**shipped, "no_suite": without_suite})
    ran: list[tuple[str, Path]] = []

    def fake_main_one(args, op_name, results):
        ran.append((op_name, results))
        return 1 if op_name == "linear_q4gsw" else 0

    monkeypatch.setattr(mutants, "main_one", fake_main_one)
    code = mutants.main(["--op", "all", "--results", str(tmp_path)])
    assert [op for op, _ in ran] == list(shipped)  # every shipped op has a suite today
    assert all(results == tmp_path / op for op, results in ran)
    assert "no mutation suite (Op.mutation_suite) in op no_suite: not checked" in capsys.readouterr().out
    assert code == 1


def test_several_ops_take_no_mutant_or_list(capsys):
    assert mutants.main(["--op", "linear_qcs4w", "--op", "embedding_q4gsw", "--list"]) == 2
    assert "--mutant and --list take one --op" in capsys.readouterr().err
