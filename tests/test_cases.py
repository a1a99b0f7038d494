"""The Selection (q4gsw.cases): case ids, skips with their reasons, name checks, empty selections, sharding,
--max-gflop, and Cases as JSON for the child process: pure logic, no adapter, no export. From the command line
(real subprocesses, issue 14): a selection that matches nothing is exit 2 for every command, a `when` that raises
for a config's shape is exit 2 naming the kernel and key; and (e2e, SwiftShader) a heavy config not selected is a
skip with its reason."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import MATRIX, cli_in_process, run_cli, write_fault_matrix
from helpers import GOOD_KERNEL, assert_clean_usage_error, only, results_json, write_matrix

from q4gsw import cli
from q4gsw.cases import (
    Case,
    Selection,
    Skip,
    build_cases,
    build_selection,
    case_from_plain,
    select_configs,
    to_plain,
)
from q4gsw.matrix.expressions import written_for
from q4gsw.matrix.load import MatrixError, Tolerance, load_matrix
from q4gsw.matrix.values import AdapterInfo
from q4gsw.report.verdict import USAGE as EXIT_USAGE
from q4gsw.sessions import HEAVY_HINT

# Every optional part of a Config, Kernel and Backend filled in, for the round trip through JSON.
RICH_MATRIX = '''
schema_version = 1

[backend.cpu]
description = "a CPU adapter"
api = "Vulkan"
adapter_name = "SwiftShader|llvmpipe"
device_type = "CPU"
provision = "swiftshader"

[backend.cpu.tolerance.edge]
atol = 3e-5
rtol = 2e-4
justification = "this backend rounds differently"

[kernel.fancy]
file = "{root}/q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl"
when = "M >= 1"
dispatch = "ceil(N / (8 * wg_size)), 1"
overrides = {{ wg_size = "min(64, max_invocations_per_workgroup)", rows = 2 }}
requires_features = ["subgroup"]
requires_limits = {{ max_invocations_per_workgroup = 64 }}
tolerance = {{ atol = 2e-5, rtol = 3e-4, justification = "the kernel's own bound" }}
device_type = "CPU"
adapter_name = "Swift"

[[config]]
name = "edge"
M = 3
K = 64
N = 16
group_size = 32
tier = "required"
suite = "edges"
inputs = ["ramp", "normal"]
weights = "linear_init"
weight_seed = 5
timeout_s = 30.5
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=64" }}
'''


@pytest.fixture
def tiny(tiny_matrix: Path):
    return load_matrix(tiny_matrix)


@pytest.fixture
def real():
    return load_matrix(MATRIX)


def _ids(selection: Selection) -> list[str]:
    return [case.id for case in selection.cases]


# ------------------------------------------------------------------------------------------------
# Cases and their ids
# ------------------------------------------------------------------------------------------------


def test_case_ids_name_config_kernel_input_and_backend(tiny):
    selection = build_selection(tiny, "swiftshader")
    assert [c.name for c in selection.configs] == ["tiny_gemv", "tiny_gemm"]
    assert _ids(selection) == ["tiny_gemv/gemv/ramp@swiftshader", "tiny_gemm/tiled/ramp@swiftshader"]
    assert len(set(_ids(selection))) == len(selection.cases)
    assert [c.id for c in selection.cases_of(tiny.config("tiny_gemm"))] == ["tiny_gemm/tiled/ramp@swiftshader"]
    case = selection.cases[0]
    assert case.role == "subject" and case.routed == "" and case.tolerance == tiny.config("tiny_gemv").tolerance


def test_one_case_per_kernel_and_input_in_matrix_order(real):
    config = real.config("kv_proj")  # inputs ramp and outliers
    selection = build_selection(real, "swiftshader", names=("kv_proj",))
    backend = real.backend("swiftshader")
    kernels = [k.name for k in real.kernels if written_for(k, backend.device_type, backend.adapter_name)]
    expected = [f"kv_proj/{k}/{i}@swiftshader" for k in kernels for i in config.inputs
                if any(c.kernel.name == k for c in selection.cases)]
    assert _ids(selection) == expected and len(expected) >= 2
    assert {c.input for c in selection.cases} == set(config.inputs)


def test_roles_and_tolerances(tiny):
    """A kernel's own tolerance applies to subjects and references, never to a mutant (judged by the config's)."""
    gemv = next(k for k in tiny.kernels if k.name == "gemv")
    loose = dataclasses.replace(gemv, tolerance=dataclasses.replace(tiny.config("tiny_gemv").tolerance, atol=1.0,
                                                                    source="kernel:gemv"))
    mutant = dataclasses.replace(loose, name="broken")
    backend = tiny.backend("swiftshader")
    cases, skipped = build_cases(tiny, backend, [tiny.config("tiny_gemv")], [loose, mutant],
                                 roles={"gemv": "reference", "broken": "mutant"})
    by_kernel = {c.kernel.name: c for c in cases}
    assert not skipped
    assert by_kernel["gemv"].role == "reference" and by_kernel["gemv"].tolerance.atol == 1.0
    assert by_kernel["broken"].role == "mutant"
    assert by_kernel["broken"].tolerance == tiny.config("tiny_gemv").tolerance


# ------------------------------------------------------------------------------------------------
# Skips and their reasons
# ------------------------------------------------------------------------------------------------


def test_other_tiers_are_skipped_with_the_session_that_runs_them(tiny):
    selection = build_selection(tiny, "swiftshader")
    assert selection.skipped == (Skip(tiny.config("tiny_heavy"), HEAVY_HINT),)
    assert HEAVY_HINT == "heavy: run `nox -s heavy`"
    heavy = build_selection(tiny, "swiftshader", tiers=("heavy",))
    assert [c.name for c in heavy.configs] == ["tiny_heavy"]
    assert {s.config.name: s.reason for s in heavy.skipped} == {"tiny_gemv": "required: run with --tier required",
                                                                "tiny_gemm": "required: run with --tier required"}


def test_named_configs_run_whatever_their_tier_and_skip_nothing(tiny):
    selection = build_selection(tiny, "swiftshader", names=("tiny_heavy", "tiny_gemv", "tiny_heavy"))
    assert [c.name for c in selection.configs] == ["tiny_heavy", "tiny_gemv"]  # once each, in the order given
    assert selection.skipped == ()


def test_a_config_no_kernel_applies_to_is_unsupported_with_the_reason(tiny):
    gemv_only = tuple(k for k in tiny.kernels if k.name == "gemv")
    selection = build_selection(tiny, "swiftshader", kernels=gemv_only)
    unsupported = [s for s in selection.skipped if s.status == "unsupported"]
    assert [s.config.name for s in unsupported] == ["tiny_gemm"]
    assert unsupported[0].reason == "no kernel applies to 5x96x40 gs=32 on backend 'swiftshader'"
    assert tiny.config("tiny_gemm") in selection.configs  # still selected: the engine fails it (required)
    assert selection.cases_of(tiny.config("tiny_gemm")) == ()


def test_a_kernel_written_for_other_adapters_does_not_apply(tiny):
    gemv = next(k for k in tiny.kernels if k.name == "gemv")
    elsewhere = (dataclasses.replace(gemv, device_type="GPU"),)
    selection = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=elsewhere)
    assert selection.cases == () and [s.status for s in selection.skipped] == ["unsupported"]
    explicit = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=elsewhere, applies=False)
    assert _ids(explicit) == ["tiny_gemv/gemv/ramp@swiftshader"]  # `check --kernel`: the user's explicit choice


# ------------------------------------------------------------------------------------------------
# Names checked against the matrix, empty selections
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, kwargs, problem, hint", [
    ("--config", {"names": ("tiny_gem",)}, "'tiny_gem' names nothing in", "did you mean 'tiny_gemv'?"),
    ("--suite", {"suites": ("lama",)}, "'lama' names nothing in", "did you mean 'llama'?"),
    ("--tier", {"tiers": ("requried",)}, "'requried' names nothing in", "did you mean 'required'?"),
], ids=["config", "suite", "tier"])
def test_unknown_names_are_matrix_errors_with_a_suggestion(tiny, option, kwargs, problem, hint):
    with pytest.raises(MatrixError) as raised:
        select_configs(tiny, **kwargs)
    error = raised.value
    assert error.where == option and error.key == option
    assert error.problem.startswith(problem) and str(tiny.path) in error.problem
    assert error.fix.startswith(hint) and "choose from" in error.fix


def test_unknown_backend_is_a_matrix_error(tiny):
    with pytest.raises(MatrixError, match="did you mean 'swiftshader'"):
        build_selection(tiny, "swiftshadr")


def test_a_selection_of_nothing_is_empty(tiny):
    """--tier optional names a real tier, but the tiny matrix has no optional config."""
    selection = build_selection(tiny, "swiftshader", tiers=("optional",))
    assert selection.is_empty() and selection.cases == ()
    assert not build_selection(tiny, "swiftshader").is_empty()


def test_an_empty_selection_is_a_usage_error(tiny_matrix: Path, tmp_path: Path, capsys):
    code = cli.main(["run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--tier", "optional",
                     "--results", str(tmp_path / "results")])
    assert code == EXIT_USAGE == 2
    err = capsys.readouterr().err
    assert "selects no config of the matrix" in err and "--suite/--tier" in err
    assert not (tmp_path / "results").exists()  # nothing was written


def test_an_empty_shard_is_not_a_usage_error(tiny_matrix: Path):
    """A CI shard may be empty when there are more shards than configs: that is not the user's mistake."""
    matrix = load_matrix(tiny_matrix)
    args = cli.build_parser().parse_args(["run", "--backend", "swiftshader", "--shard", "3/3"])
    selection = cli.selection_from_args(matrix, args)
    assert selection.is_empty()


# ------------------------------------------------------------------------------------------------
# Shards and --max-gflop
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_partition_configs_and_cases(real, count):
    whole = build_selection(real, "swiftshader", suites=("llama", "edges"))
    configs, cases, skipped = [], [], []
    for index in range(1, count + 1):
        shard = whole.filter_by_shard(index, count)
        configs += shard.configs
        cases += shard.cases
        skipped += [s for s in shard.skipped if s.config not in whole.configs]
        assert all(c.config in shard.configs for c in shard.cases)
        if index > 1:  # other-tier skips are reported by shard 1 only
            assert all(s.config in shard.configs for s in shard.skipped)
    assert sorted(c.name for c in configs) == sorted(c.name for c in whole.configs)
    assert len(configs) == len(set(configs))
    assert sorted(c.id for c in cases) == sorted(c.id for c in whole.cases)
    assert sorted(s.config.name for s in skipped) == sorted(s.config.name for s in whole.skipped
                                                             if s.config not in whole.configs)


def test_build_selection_shards_like_filter_by_shard(real):
    whole = build_selection(real, "swiftshader")
    assert build_selection(real, "swiftshader", shard=(2, 3)) == whole.filter_by_shard(2, 3)


def test_max_gflop_drops_the_large_configs_with_the_reason(tiny):
    # tiny_gemv: 2*1*64*16 = 2048 FLOP; tiny_gemm: 2*5*96*40 = 38400 FLOP
    selection = build_selection(tiny, "swiftshader", max_gflop=3e-6)
    assert [c.name for c in selection.configs] == ["tiny_gemv"]
    assert _ids(selection) == ["tiny_gemv/gemv/ramp@swiftshader"]
    dropped = [s for s in selection.skipped if s.config.name == "tiny_gemm"]
    assert dropped == [Skip(tiny.config("tiny_gemm"), "0.0 GFLOP is over --max-gflop 3e-06")]
    assert build_selection(tiny, "swiftshader", max_gflop=None) == build_selection(tiny, "swiftshader")
    assert build_selection(tiny, "swiftshader", max_gflop=1.0).configs == build_selection(tiny, "swiftshader").configs


# ------------------------------------------------------------------------------------------------
# Cases as JSON (the child's job file)
# ------------------------------------------------------------------------------------------------


def test_case_round_trips_through_json(tmp_path: Path):
    path = tmp_path / "matrix.toml"
    path.write_text(RICH_MATRIX.format(root=Path(__file__).resolve().parent.parent))
    matrix = load_matrix(path)
    selection = build_selection(matrix, "cpu", suites=("edges",))
    assert len(selection.cases) == 2
    for case in selection.cases:
        case = dataclasses.replace(case, role="reference", routed="fancy")
        plain = json.loads(json.dumps(to_plain(case)))
        back = case_from_plain(plain)
        assert back == case
        assert back.id == case.id and isinstance(back, Case)
        assert back.kernel.overrides == {"wg_size": "min(64, max_invocations_per_workgroup)", "rows": 2}
        assert back.kernel.dispatch == ("ceil(N / (8 * wg_size))", "1")
        assert back.kernel.requires_features == ("subgroup",) and back.kernel.device_type == "CPU"
        assert back.backend.tolerance_overrides["edge"].atol == 3e-5
        assert back.tolerance.source == "backend:cpu"  # the backend's override beats the kernel's own bound
        assert back.config.inputs == ("ramp", "normal") and back.config.timeout_s == 30.5


def test_every_case_of_the_real_matrix_round_trips(real):
    for backend in real.backends:
        selection = build_selection(real, backend, suites=("llama", "edges"), tiers=("required", "heavy"))
        for case in selection.cases:
            assert case_from_plain(json.loads(json.dumps(to_plain(case)))) == case, case.id


# ------------------------------------------------------------------------------------------------
# Selections from the command line: empty ones, `when` failing for a shape, heavy not selected
# ------------------------------------------------------------------------------------------------

EMPTY_SELECTIONS = [  # (id, argv after the command's --matrix, text the error must contain)
    ("run-suite-typo", ["run", "--backend", "swiftshader", "--suite", "edgse"], "'edgse' names nothing"),
    ("check-suite-typo", ["check", "--kernel", GOOD_KERNEL, "--dispatch", "1", "--backend", "swiftshader", "--suite",
                          "lama"], "'lama' names nothing"),
    ("run-unknown-config", ["run", "--backend", "swiftshader", "--config", "nope"], "--config"),
    ("run-tier-with-no-config", ["run", "--backend", "swiftshader", "--tier", "optional"], "key '--suite/--tier'"),
    ("run-suite-without-that-tier", ["run", "--backend", "swiftshader", "--suite", "other"], "key '--suite/--tier'"),
    ("run-unknown-tier", ["run", "--backend", "swiftshader", "--tier", "requried"], "--tier"),
    ("run-unknown-backend", ["run", "--backend", "swiftshadr", "--suite", "llama"], "key 'backend'"),
    ("export-suite-typo", ["export", "--suite", "lama"], "'lama' names nothing"),
    ("mutants-suite-typo", ["mutants", "--backend", "swiftshader", "--suite", "lama"], "'lama' names nothing"),
    ("audit-suite-typo", ["audit", "--suite", "lama"], "'lama' names nothing"),
    ("audit-tier-with-no-config", ["audit", "--tier", "optional", "--suite", "llama"], "selects no config"),
    ("ci-matrix-suite-typo", ["ci-matrix", "--suite", "lama"], "key '--suite': 'lama' names nothing"),
    ("bench-unknown-backend", ["bench", "--backend", "swiftshadr"], "key 'backend'"),
]


@pytest.mark.parametrize("argv, says", [e[1:] for e in EMPTY_SELECTIONS], ids=[e[0] for e in EMPTY_SELECTIONS])
def test_a_selection_matching_nothing_is_a_usage_error(tmp_path: Path, argv: list[str], says: str) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml", configs="bho")
    outputs = {"run": ["--results", str(tmp_path / "r")], "check": ["--results", str(tmp_path / "r")],
               "mutants": ["--results", str(tmp_path / "r")], "audit": ["--json", str(tmp_path / "r" / "a.json")],
               "bench": ["--json", str(tmp_path / "r" / "b.json")]}.get(argv[0], [])
    cache = tmp_path / "cache"
    done = cli_in_process(*argv, "--matrix", str(matrix), *outputs, env={"Q4GSW_CACHE": str(cache)})
    assert_clean_usage_error(done, says)
    assert not (tmp_path / "r").exists() and not cache.exists()  # nothing run, provisioned or written


def test_an_expression_that_fails_for_a_shape_is_a_usage_error_in_run(tmp_path: Path) -> None:
    """`when` is evaluated while selecting: an expression that raises for a config's shape is exit 2, naming the
    kernel and the key, not a traceback."""
    matrix = write_matrix(tmp_path / "matrix.toml", when="N / (M - 1) > 1")
    done = cli_in_process("run", "--matrix", str(matrix), "--backend", "swiftshader", "--results",
                          str(tmp_path / "r"), env={"Q4GSW_CACHE": str(tmp_path / "cache")})
    assert_clean_usage_error(done, "[kernel.good] with config 'b'", "key 'when'", "ZeroDivisionError")
    assert not (tmp_path / "cache").exists()


@pytest.mark.e2e
def test_heavy_not_selected_is_a_skip_with_its_reason(tmp_path: Path, swiftshader_icd: dict,
                                                      fault_fixtures: Path) -> None:
    matrix = write_fault_matrix(tmp_path / "matrix.toml", order="hb")
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(fault_fixtures),
                   "--tier", "required", "--results", str(tmp_path / "r"), env=swiftshader_icd, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    _, results = results_json(tmp_path / "r")
    assert only(results["b"])["status"] == "pass"
    assert only(results["h"])["status"] == "skip" and only(results["h"])["message"] == "heavy: run `nox -s heavy`"
    assert "SKIP h: heavy: run `nox -s heavy`" in done.stdout


def test_only_a_route_variant_is_routed(tiny):
    """A kernel outside the route never becomes "what the runtime dispatches", even when the route's variants
    cannot run: the config is then unsupported (and a required one fails)."""
    from q4gsw.matrix.values import AdapterInfo

    adapter = AdapterInfo(name="SwiftShader Device", device_type="CPU", api="Vulkan", webgpu="wgpu-native",
                          limits={"max-compute-invocations-per-workgroup": 256,
                                  "max-compute-workgroups-per-dimension": 65535})
    gemv = next(k for k in tiny.kernels if k.name == "gemv")
    never = dataclasses.replace(gemv, name="never", when="M == 0")
    selection = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=(never, gemv))
    routed = dataclasses.replace(selection, route={"linear_q4gsw": ("never",)}).routed(adapter)
    assert routed.cases == ()
    assert [s.status for s in routed.skipped] == ["unsupported"]
    assert "no variant of the route" in routed.skipped[0].reason
    # why each route variant that was selected cannot run is said: the reason a config is unsupported
    needs_f16 = dataclasses.replace(gemv, name="needs_f16", requires_features=("shader-f16",))
    f16_only = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=(needs_f16,))
    (skip,) = dataclasses.replace(f16_only, route={"linear_q4gsw": ("needs_f16",)}).routed(adapter).skipped
    assert skip.reason.endswith(": kernel 'needs_f16' needs adapter features ['shader-f16'], which SwiftShader "
                                "Device lacks through wgpu-native"), skip.reason
    both = dataclasses.replace(selection, route={"linear_q4gsw": ("never", "gemv")}).routed(adapter)
    assert {c.routed for c in both.cases} == {"gemv"}


def test_an_unsupported_config_names_only_its_own_ops_route(real):
    """Issue 29: `run --executorch` on a tree without choose_qparams_affine/ (linear_dq8ca_q4gsw, the routed
    variant, cannot be read; the exact-qparams variant, not routed, can) said "no variant of the route" followed
    by all four ops' variants, as if they were one route; each op has its own."""
    from q4gsw.matrix.values import AdapterInfo

    adapter = AdapterInfo(name="SwiftShader Device", device_type="CPU", api="Vulkan", webgpu="dawn",
                          limits={"max-compute-invocations-per-workgroup": 256,
                                  "max-compute-workgroups-per-dimension": 65535})
    spec = real.kernel_sets["executorch_dq8ca"]
    found = tuple(k for k in spec.kernels if k.name != "linear_dq8ca_q4gsw")  # the tree lacks its `before`
    selection = build_selection(real, "swiftshader-dawn", names=("dq8ca_up_basic",), kernels=found,
                                route={s.op: s.route for s in real.kernel_sets.values()})  # as cli builds it
    assert len(real.kernel_sets) > 1 and [c.kernel.name for c in selection.cases][:1] == [found[0].name]
    (skip,) = selection.routed(adapter).skipped
    assert skip.status == "unsupported"
    assert skip.reason.startswith("no variant of the route (linear_dq8ca_q4gsw) holds for "), skip.reason


def test_to_plain_writes_non_finite_floats_as_text():
    from q4gsw.cases import to_plain

    assert to_plain({"a": float("inf"), "b": (float("nan"), 1.5)}) == {"a": "inf", "b": ["nan", 1.5]}


# ------------------------------------------------------------------------------------------------
# Routing, the filters and the plain-JSON readers in detail (issue #29's mutation audit)
# ------------------------------------------------------------------------------------------------

SWIFTSHADER = AdapterInfo(name="SwiftShader Device", device_type="CPU", api="Vulkan", webgpu="wgpu-native",
                          limits={"max-compute-invocations-per-workgroup": 256,
                                  "max-compute-workgroups-per-dimension": 65535})


def _variants(tiny) -> tuple:
    """gemv and three more variants of it for tiny_gemv (M = 1): 'wide' and 'extra' hold, 'never' needs a feature
    SwiftShader lacks (its `when` holds: it is built into a case, and resolving it on the adapter fails)."""
    gemv = next(k for k in tiny.kernels if k.name == "gemv")
    return (dataclasses.replace(gemv, name="never", requires_features=("shader-f16",)), gemv,
            dataclasses.replace(gemv, name="wide"),
            dataclasses.replace(gemv, name="extra"))


def test_the_first_variant_of_the_route_that_holds_is_routed_and_the_others_are_said(tiny):
    selection = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=_variants(tiny))
    assert selection.routed(SWIFTSHADER) is selection  # no route: nothing to do
    routed = dataclasses.replace(selection, route={"linear_q4gsw": ("never", "wide", "gemv")}).routed(SWIFTSHADER)
    assert [(c.kernel.name, c.routed) for c in routed.cases] == [("wide", "wide")]
    assert routed.skipped == (Skip(tiny.config("tiny_gemv"), "routed to wide; not checked (add --all-variants): "
                                                              "gemv, extra", kernel="other-variants"),)
    other_op = dataclasses.replace(selection, route={"linear_qcs4w": ("gemv",)}).routed(SWIFTSHADER)
    assert other_op.cases == () and other_op.skipped[0].reason.startswith("no variant of the route () holds for ")
    assert other_op.skipped[0].reason.endswith(" on SwiftShader Device") and other_op.skipped[0].config.name == \
        "tiny_gemv"


def test_all_variants_runs_every_variant_that_holds_in_route_order_and_names_those_that_do_not(tiny):
    selection = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=_variants(tiny))
    everything = dataclasses.replace(selection, route={"linear_q4gsw": ("never", "gemv", "wide")},
                                     all_variants=True).routed(SWIFTSHADER)
    assert [(c.kernel.name, c.routed) for c in everything.cases] == [("gemv", "gemv"), ("wide", "gemv"),
                                                                     ("extra", "gemv")]  # the route's order first
    assert everything.skipped == (Skip(tiny.config("tiny_gemv"), "preconditions do not hold on SwiftShader Device "
                                       "(features, limits or `when`): never", kernel="other-variants"),)
    alone = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=_variants(tiny)[1:2])
    only_one = dataclasses.replace(alone, route={"linear_q4gsw": ("gemv",)}).routed(SWIFTSHADER)
    assert [c.routed for c in only_one.cases] == ["gemv"] and only_one.skipped == ()  # nothing else to say


def test_max_gflop_keeps_a_config_at_exactly_the_limit(tiny):
    # tiny_gemv: 2 * 1 * 64 * 16 = 2048 FLOP, exactly 2.048e-6 GFLOP
    assert [c.name for c in build_selection(tiny, "swiftshader", max_gflop=2048 / 1e9).configs] == ["tiny_gemv"]
    assert build_selection(tiny, "swiftshader", max_gflop=2047 / 1e9).configs == ()
    real = load_matrix(MATRIX)
    big = build_selection(real, "swiftshader", names=("q_proj_4k",), max_gflop=1.0)
    d = real.config("q_proj_4k").dims
    (skip,) = big.skipped  # 2 * M * K * N FLOP
    assert skip.reason == f"{2 * d['M'] * d['K'] * d['N'] / 1e9:.1f} GFLOP is over --max-gflop 1" and big.cases == ()


def test_filter_by_op_skips_the_other_ops_configs_with_the_reason_and_drops_their_earlier_skips(tiny):
    gemv_only = tuple(k for k in tiny.kernels if k.name == "gemv")
    selection = build_selection(tiny, "swiftshader", kernels=gemv_only)  # tiny_gemm: no kernel applies
    same = selection.filter_by_op({"linear_q4gsw"}, "no kernels of {op}")
    assert same.configs == selection.configs and same.skipped == selection.skipped and same.cases == selection.cases
    none = selection.filter_by_op({"embedding_q4gsw"}, "this checkout has no {op}/ folder")
    assert none.configs == () and none.cases == ()
    assert [(s.config.name, s.reason) for s in none.skipped] == [
        ("tiny_heavy", HEAVY_HINT),  # not selected: its skip stays
        ("tiny_gemv", "this checkout has no linear_q4gsw/ folder"),
        ("tiny_gemm", "this checkout has no linear_q4gsw/ folder")]  # "no kernel applies" gives way


def test_other_tier_skips_are_reported_by_the_first_shard_only(tiny):
    selection = build_selection(tiny, "swiftshader")
    first, second = selection.filter_by_shard(1, 2), selection.filter_by_shard(2, 2)
    assert [s.config.name for s in first.skipped] == ["tiny_heavy"] and second.skipped == ()
    assert {c.name for c in first.configs} | {c.name for c in second.configs} == {"tiny_gemv", "tiny_gemm"}
    assert {c.config.name for c in second.cases} == {c.name for c in second.configs}


def test_an_op_selects_every_suite_of_its_configs_and_an_unknown_op_is_named(tiny):
    real = load_matrix(MATRIX)
    configs, skipped = select_configs(real, ops=("embedding_q4gsw",))
    ops = {c.op for c in configs}
    assert ops == {"embedding_q4gsw"} and configs  # every suite, not only the default llama
    assert {c.suite for c in configs} == {c.suite for c in real.configs if c.op == "embedding_q4gsw"
                                          and c.tier == "required"}
    assert all(s.config.op == "embedding_q4gsw" for s in skipped)
    with pytest.raises(MatrixError) as raised:
        select_configs(real, ops=("embeding_q4gsw",))
    assert (raised.value.where, raised.value.key) == ("--op", "--op")
    assert raised.value.problem == f"'embeding_q4gsw' names nothing in {real.path}"
    assert raised.value.fix.startswith("did you mean 'embedding_q4gsw'? choose from ")
    with pytest.raises(MatrixError) as raised:
        select_configs(tiny, names=("zzzz",))
    assert raised.value.fix == "choose from tiny_gemm, tiny_gemv, tiny_heavy"  # nothing close: no hint, sorted


def test_build_selection_records_its_filters_and_defaults(tiny):
    selection = build_selection(tiny, "swiftshader", names=["tiny_gemv"], ops=["linear_q4gsw"])
    assert dict(selection.filters) == {"tiers": None, "suites": None, "names": ("tiny_gemv",),
                                       "ops": ("linear_q4gsw",)}
    assert selection.all_variants is False and dict(selection.route) == {} and selection.rerun == ()
    assert selection.backend == tiny.backend("swiftshader")
    with_rerun = selection.with_rerun((("--matrix", "m.toml"),))
    assert with_rerun.rerun == (("--matrix", "m.toml"),) and {c.rerun for c in with_rerun.cases} == {
        (("--matrix", "m.toml"),)}


def test_selects_nothing_names_the_options_that_select_nothing_together(tiny):
    from q4gsw.cases import selects_nothing

    by_name = selects_nothing(tiny, "run", ("tiny_gemv",), ("embedding_q4gsw",))
    assert (by_name.where, by_name.key) == ("run", "--config/--op")
    assert by_name.problem == "selects no config of the matrix (config 'tiny_gemv' is of op linear_q4gsw)"
    by_suite = selects_nothing(tiny, "bench", (), ())
    assert (by_suite.key, by_suite.problem) == ("--suite/--tier", "selects no config of the matrix")
    assert by_suite.fix == "see `python -m q4gsw list` for the configs, suites, tiers and ops"


def test_build_cases_keeps_the_configs_tolerance_for_a_kernel_without_one_and_every_input(tiny):
    config = dataclasses.replace(tiny.config("tiny_gemv"), inputs=("ramp", "normal"))
    gemv = next(k for k in tiny.kernels if k.name == "gemv")
    own = dataclasses.replace(gemv, name="own", tolerance=dataclasses.replace(config.tolerance, atol=0.5))
    cases, skipped = build_cases(tiny, tiny.backend("swiftshader"), [config], [gemv, own], use_kernel_tolerance=False)
    assert [(c.kernel.name, c.input, c.role, c.tolerance.atol) for c in cases] == [
        ("gemv", "ramp", "subject", 1e-5), ("gemv", "normal", "subject", 1e-5),
        ("own", "ramp", "subject", 1e-5), ("own", "normal", "subject", 1e-5)]  # the kernel's own is not used
    assert skipped == ()


def test_backend_and_adapter_from_plain_rebuild_tuples_and_tolerances():
    from q4gsw.cases import adapter_from_plain, backend_from_plain

    plain = {"name": "b", "description": "", "api": "Vulkan", "adapter_name": "X", "device_type": "GPU",
             "provision": "native", "webgpu": "dawn",
             "tolerance_overrides": {"c": {"atol": 0.5, "rtol": 0.25, "justification": "j"}}}
    backend = backend_from_plain(plain)
    assert backend.dawn_toggles == () and backend.tolerance_overrides["c"] == Tolerance(atol=0.5, rtol=0.25,
                                                                                       justification="j")
    assert backend_from_plain({**plain, "dawn_toggles": ["t1", "t2"]}).dawn_toggles == ("t1", "t2")
    adapter = adapter_from_plain({"name": "A", "device_type": "CPU", "api": "Vulkan", "webgpu": "dawn",
                                  "features": ["subgroup", "shader-f16"], "limits": {"x": 1}})
    assert adapter.features == ("subgroup", "shader-f16") and adapter.name == "A" and adapter.limits == {"x": 1}


def test_routing_goes_on_past_an_unsupported_config_and_keeps_every_configs_cases(tiny):
    gemv = next(k for k in tiny.kernels if k.name == "gemv")
    tiled = next(k for k in tiny.kernels if k.name == "tiled")
    needy = dataclasses.replace(tiled, name="needy", requires_features=("shader-f16",))
    selection = build_selection(tiny, "swiftshader", kernels=(needy, gemv, tiled))  # tiny_gemv, then tiny_gemm
    routed = dataclasses.replace(selection, route={"linear_q4gsw": ("needy", "gemv")}).routed(SWIFTSHADER)
    assert [(c.config.name, c.kernel.name, c.routed) for c in routed.cases] == [("tiny_gemv", "gemv", "gemv")]
    (unsupported,) = [s for s in routed.skipped if s.status == "unsupported"]
    assert unsupported.config.name == "tiny_gemm"
    assert unsupported.reason.startswith("no variant of the route (needy, gemv) holds for 5x96x40 gs=32 on "
                                         "SwiftShader Device")
    both = dataclasses.replace(selection, route={"linear_q4gsw": ("gemv", "tiled")}).routed(SWIFTSHADER)
    assert [(c.config.name, c.routed) for c in both.cases] == [("tiny_gemv", "gemv"), ("tiny_gemm", "tiled")]
    every = dataclasses.replace(selection, route={"linear_q4gsw": ("gemv", "tiled")}, all_variants=True)
    assert [s.reason for s in every.routed(SWIFTSHADER).skipped if s.kernel == "other-variants"] == [
        "preconditions do not hold on SwiftShader Device (features, limits or `when`): needy"]
    needs = dataclasses.replace(gemv, name="needy", requires_features=("shader-f16",))  # `when` M == 1 holds
    two_unable = build_selection(tiny, "swiftshader", names=("tiny_gemv",), kernels=(
        needs, dataclasses.replace(needs, name="needier"), gemv))
    said = dataclasses.replace(two_unable, route={"linear_q4gsw": ("gemv",)}, all_variants=True).routed(SWIFTSHADER)
    assert said.skipped[-1].reason.endswith("(features, limits or `when`): needy, needier")
