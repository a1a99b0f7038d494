"""Hostile cases for the drift gate and the versions report (issue 29, second pass): a false green, a traceback or
a silently ignored option found by trying them, each kept here as the test that failed before its fix. Offline:
results built from real error arrays (test_drift.case) and written with the real writers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_in_process
from helpers import assert_clean_usage_error
from test_drift import GOLDEN, TOL, case
from test_drift_gate import broken, gate, written

from q4gsw.commands import bench, report
from q4gsw.compare import compare as compare_arrays
from q4gsw.drift.rule import diff_runs
from q4gsw.report.histogram import error_histogram
from q4gsw.report.result import Result

# No step summary and no pyplot: these tests read the reports' text, not the plots (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("quiet_reports")


def judged(y: np.ndarray, kernel: str = "cpu_gemv") -> Result:
    """The case kv_proj/<kernel>/normal judged by the real compare() from a kernel output y."""
    verdict = compare_arrays(y, GOLDEN, TOL)
    errors = replace(verdict.errors, histogram=error_histogram(y, GOLDEN))
    return replace(case(kernel=kernel), status="pass" if verdict.passed else "fail", message=verdict.message,
                   errors=errors)


def with_nan(count: int) -> np.ndarray:
    y = GOLDEN + 1e-3  # a kernel off by 1e-3 everywhere: fails, finite
    y.flat[:count] = np.nan
    return y


# ------------------------------------------------------------------------------------------------
# A kernel that returns garbage, against a baseline where it already failed
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nans", [1, GOLDEN.size])
def test_nan_outputs_in_a_case_that_failed_before_are_drift(tmp_path, capsys, nans: int) -> None:
    """fail (|err| 1e-3) -> fail with NaN outputs: max |err| is over the finite outputs, so one NaN read as
    'improved' and all-NaN as 'same': the gate held."""
    old, new = [judged(with_nan(0)), case(kernel="cpu_tiled")], [judged(with_nan(nans)), case(kernel="cpu_tiled")]
    assert gate(tmp_path, old, new) == 1
    out = capsys.readouterr().out
    assert f"DRIFT kv_proj/cpu_gemv/normal@swiftshader: non-finite outputs 0 -> {nans}" in out
    assert "gate: fails: 1 drifted" in out


def test_writes_past_the_output_that_grew_are_drift_and_fewer_nans_improve() -> None:
    old = judged(with_nan(0))
    guarded = replace(old, errors=replace(old.errors, guard_violations=3))
    assert diff_runs([old], [guarded], label="old").drifted[0].reason() == "writes past the output 0 -> 3"
    # the mirror image: NaN outputs gone, the same finite error: improved, never counted against the change
    comparison = diff_runs([judged(with_nan(5))], [judged(with_nan(0))], label="old")
    assert [d.kind for d in comparison.deltas] == ["improved"] and comparison.gate() == []


# ------------------------------------------------------------------------------------------------
# One case id in several rows (two runs of one backend merged, shards)
# ------------------------------------------------------------------------------------------------


def test_a_failure_repeated_after_a_pass_of_the_same_case_fails_the_gate(tmp_path, capsys) -> None:
    """new results holding kv_proj/cpu_gemv twice, pass then fail (1e7x the error): the first row was kept and the
    gate held."""
    old = [case(), case(kernel="cpu_tiled")]
    assert gate(tmp_path, old, [case(), broken(case()), case(kernel="cpu_tiled")]) == 1
    assert "REGRESSED kv_proj/cpu_gemv/normal@swiftshader: status pass -> fail" in capsys.readouterr().out
    # a larger error in a second row of the same status is drift, whichever row comes first
    assert [d.kind for d in diff_runs([case()], [case(scale=8.0), case()], label="old").deltas] == ["drift"]


def test_a_baseline_holding_a_case_twice_is_compared_with_its_best_measured_row() -> None:
    """The strictest comparison: a fail now is a regression if the baseline passed it at all; a skip row beside a
    measurement (another shard's) is no row of the comparison."""
    skipped = replace(case(), status="skip", message="skip", errors=None)
    comparison = diff_runs([broken(case()), skipped, case()], [broken(case())], label="old")
    assert [d.key for d in comparison.regressed] == ["kv_proj/cpu_gemv/normal@swiftshader"]
    assert diff_runs([case()], [skipped, case()], label="old").gate() == []  # a shard's skip row beside the pass


# ------------------------------------------------------------------------------------------------
# The gate's options without a baseline: a gate that never ran is no green
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [["--fail-on-drift"], ["--accept-removed"],
                                     ["--fail-on-drift", "--accept-removed"]])
def test_report_gate_options_without_a_baseline_are_a_usage_error(tmp_path, capsys, options: list[str]) -> None:
    """`report NEW --fail-on-drift` compared nothing and exited 0, writing the reports: a gate asked for, never run."""
    new = written(tmp_path / "new", [case()])
    assert report.main([str(new), *options, "--quiet", "--no-step-summary"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {options[0]} needs --baseline OLD (the run to compare with): without one nothing is "
                   f"compared, no gate runs: add --baseline OLD, or drop {' and '.join(options)}")
    assert not (tmp_path / "new" / "summary.md").exists()


def test_run_fail_on_drift_without_a_baseline_is_a_usage_error_before_any_work(tmp_path, tiny_matrix) -> None:
    done = cli_in_process("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--results",
                          str(tmp_path / "out"), "--fail-on-drift")
    assert_clean_usage_error(done, "key '--fail-on-drift': needs --baseline OLD", "add --baseline OLD")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("option", ["--fail-on-drift", "--accept-removed"])
def test_bench_gate_options_without_a_baseline_are_a_usage_error(tmp_path, capsys, option: str) -> None:
    assert bench.main(["--shapes", "1x64x16", "--json", str(tmp_path / "b.json"), option]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {option} needs --baseline OLD.json (the bench JSON to compare with)"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "b.json").exists()


# ------------------------------------------------------------------------------------------------
# report --versions: runs and bench JSONs that do not fit together
# ------------------------------------------------------------------------------------------------

DAWN = ("wgpudawn==0.32.0.1", "wgpudawn==0.32.0.2")


def releases(tmp_path, *packages: str) -> list[str]:
    from test_versions import _result, _run

    return [str(_run(tmp_path / package, package, [_result("q_proj", package, 1e-7)])) for package in packages]


def benches(tmp_path, *changes: tuple[str, dict, dict]) -> list[str]:
    """A bench JSON per (package, changes to its first row, changes to its top level)."""
    import json

    from test_versions import _bench

    paths = []
    for index, (package, row, top) in enumerate(changes):
        path = _bench(tmp_path / f"bench{index}.json", package, 1e-3)
        data = json.loads(path.read_text())
        data["rows"][0].update(row)
        path.write_text(json.dumps({**data, **top}))
        paths.append(str(path))
    return paths


def versions(tmp_path, runs: list[str], bench_paths: list[str] = (), *extra: str) -> int:
    bench_args = ["--bench", *bench_paths] if bench_paths else []
    return report.main(["--versions", *runs, *bench_args, "--out", str(tmp_path / "table"), "--no-step-summary",
                        "--quiet", *extra])


def test_versions_of_two_packages_compare_nothing_and_fail_the_gate(tmp_path, capsys) -> None:
    """wgpu and wgpudawn, one release each: no step, so no gate line, and --fail-on-drift exited 0."""
    runs = releases(tmp_path, "wgpu==0.32.0", "wgpudawn==0.32.0.4")
    assert versions(tmp_path, runs, (), "--fail-on-drift") == 1
    assert "gate: NOTHING COMPARED: no two releases of one package (wgpu==0.32.0, wgpudawn==0.32.0.4)" in \
        capsys.readouterr().err
    assert "No two releases of one package" in (tmp_path / "table" / "versions.md").read_text()
    assert versions(tmp_path, runs) == 0  # the table across implementations is still written, reported only


@pytest.mark.parametrize("change", [
    {"correct": False, "message": "wrong output"},  # a wrong kernel: never timed, so it was no gate line at all
    {"time_s": 3e-3, "median_s": 3.03e-3, "spread_s": 6e-5, "samples_s": [3e-3, 3.06e-3, 3.03e-3]},  # 3x slower
    {"shape": "1x4096x4096"},  # another shape: nothing compared
])
def test_versions_fail_on_drift_holds_the_bench_rule_too(tmp_path, capsys, change: dict) -> None:
    """--bench steps were shown, never gated: a wrong or 3x slower kernel in the new release exited 0."""
    paths = benches(tmp_path, (DAWN[0], {}, {}), (DAWN[1], change, {}))
    assert versions(tmp_path, releases(tmp_path, *DAWN), paths, "--fail-on-drift") == 1
    err = capsys.readouterr().err
    assert ("gate: WRONG wgpudawn==0.32.0.2: 1x2048x2048 gemv: wrong output" if "correct" in change else
            "gate: wgpudawn==0.32.0.1 -> wgpudawn==0.32.0.2: bench ") in err, err


def test_versions_a_wrong_kernel_in_the_first_release_fails_the_gate(tmp_path, capsys) -> None:
    """diff_bench leaves a baseline's wrong rows out: the first release's wrong kernel was never seen."""
    paths = benches(tmp_path, (DAWN[0], {"correct": False, "message": "garbage"}, {}), (DAWN[1], {}, {}))
    assert versions(tmp_path, releases(tmp_path, *DAWN), paths, "--fail-on-drift") == 1
    assert "gate: WRONG wgpudawn==0.32.0.1: 1x2048x2048 gemv: garbage" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["release of no run", "one bench", "another op"])
def test_versions_bench_jsons_that_do_not_match_the_runs_are_a_usage_error(tmp_path, capsys, problem: str) -> None:
    """Each was silently left out (no speed in any step, exit 0)."""
    given = {"release of no run": [(DAWN[0], {}, {}), ("wgpudawn==0.32.0.7", {}, {})],
             "one bench": [(DAWN[0], {}, {})],
             "another op": [(DAWN[0], {}, {"op": "linear_q4gsw"}), (DAWN[1], {}, {"op": "embedding_q4gsw"})]}[problem]
    assert versions(tmp_path, releases(tmp_path, *DAWN), benches(tmp_path, *given)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --bench") and len(err.splitlines()) == 1, err
    assert {"release of no run": "times wgpudawn==0.32.0.7, a release none of the runs is",
            "one bench": "no two successive releases of one package both have a bench JSON",
            "another op": "times op linear_q4gsw, --bench"}[problem] in err
    assert not (tmp_path / "table" / "versions.md").exists()


# ------------------------------------------------------------------------------------------------
# One-line mutants of the gate that no test killed (each applied by hand: the test fails; reverted)
# ------------------------------------------------------------------------------------------------


def test_nothing_compared_is_the_verdict_even_with_removals_accepted() -> None:
    """Mutant: gate_line without its 'nothing compared' branch said 'gate: holds (2 removed, accepted)'."""
    other = [replace(case(), backend="lavapipe", case_id="kv_proj/cpu_gemv/normal@lavapipe")]
    comparison = diff_runs(other, [case()], label="old", accept_removed=True)
    assert comparison.gate_line() == "gate: fails: nothing compared"


def test_a_mutants_error_growing_is_no_drift() -> None:
    """Mutant: delta measuring a mutant's error made a mutant caught by more 'drift'."""
    mutant = replace(judged(with_nan(0)), role="mutant")
    grown = replace(mutant, errors=replace(mutant.errors, max_abs=mutant.errors.max_abs * 100))
    comparison = diff_runs([mutant], [grown], label="old")
    assert [d.kind for d in comparison.deltas] == ["same"] and comparison.gate() == []


def test_a_scoped_run_leaves_other_backends_and_kinds_of_kernel_outside() -> None:
    """Mutants: Scope.covers without its backend or kernel-family test, kernel_family not knowing 'executorch':
    a run on swiftshader listed the baseline's lavapipe case, or an ExecuTorch tree's, as REMOVED."""
    from q4gsw.drift.rule import Scope, kernel_family
    from q4gsw.report.result import Provenance

    lavapipe = replace(case(), backend="lavapipe", case_id="kv_proj/cpu_gemv/normal@lavapipe")
    executorch = replace(case(kernel="et_q4gsw"), provenance=Provenance(kernel_source="executorch:et_q4gsw.wgsl"))
    comparison = diff_runs([case(), lavapipe, executorch], [case()], label="old",
                           scope=Scope("swiftshader", frozenset({"kv_proj"})))
    assert comparison.not_compared == 2 and comparison.counts()["vanished"] == 0 and comparison.gate() == []
    assert [kernel_family(s) for s in ("executorch:x", "check:y", "mutant:z", "kernels/gemv.wgsl")] == \
        ["executorch", "check", "mutant", "matrix"]


def test_an_unchanged_count_of_nan_outputs_is_no_drift() -> None:
    """Mutant: any count at all (>=) read as growth."""
    assert [d.kind for d in diff_runs([judged(with_nan(5))], [judged(with_nan(5))], label="old").deltas] == ["same"]


def test_among_rows_of_one_case_a_failure_is_worse_than_a_pass_whatever_its_error() -> None:
    """Mutant: _badness without its failure term kept the pass with the larger error."""
    passed = case(scale=8.0)
    failed = replace(case(), status="fail", message="fail now")  # a smaller error, but failed
    [kept] = diff_runs([case()], [passed, failed], label="old").deltas
    assert kept.new is failed and kept.regressed


def test_a_removed_case_whose_config_ran_nothing_says_so() -> None:
    """Mutant: _why_not_now without its config branch said the kernel ran on no config."""
    comparison = diff_runs([case(), case(config="q_proj")], [case()], label="old")
    [removed] = comparison.removed
    assert removed.why == "config 'q_proj' measured no case on 'swiftshader' in these results"


def test_an_exact_baseline_is_a_baseline() -> None:
    """Mutant: result_problem refusing an error of 0 (value <= 0) refused every exact kernel's baseline."""
    from q4gsw.drift.baseline import result_problem

    exact = case(scale=0.0)
    assert exact.errors.max_abs == 0.0 and result_problem(exact) == ""


def test_a_histogram_with_two_equal_edges_is_refused() -> None:
    """Mutant: 'not increasing' as b < a let a bin of width 0 (which error_quantile divides by) through."""
    from q4gsw.drift.baseline import result_problem

    bad = case()
    edges = list(bad.errors.histogram["log10_edges"])
    edges[1] = edges[0]
    bad = replace(bad, errors=replace(bad.errors, histogram={**bad.errors.histogram, "log10_edges": edges}))
    assert result_problem(bad) == "errors.histogram.log10_edges are not increasing"


def test_versions_a_run_of_two_packages_is_refused(tmp_path, capsys) -> None:
    """Mutant: release_package taking any package when a run recorded several."""
    from test_versions import _result, _run

    mixed = _run(tmp_path / "mixed", DAWN[1], [_result("q_proj", DAWN[1], 1e-7), _result("kv_proj", DAWN[0], 1e-7)])
    assert versions(tmp_path, [*releases(tmp_path, DAWN[0]), str(mixed)]) == 2
    assert "records several WebGPU packages (wgpudawn==0.32.0.1, wgpudawn==0.32.0.2)" in capsys.readouterr().err


def test_versions_a_second_bench_of_one_release_is_refused(tmp_path, capsys) -> None:
    """Mutant: a second bench JSON of a release silently replacing the first."""
    paths = benches(tmp_path, (DAWN[0], {}, {}), (DAWN[1], {}, {}), (DAWN[1], {}, {}))
    assert versions(tmp_path, releases(tmp_path, *DAWN), paths) == 2
    assert "a second bench of wgpudawn==0.32.0.2" in capsys.readouterr().err


def test_versions_accept_removed_reaches_the_bench_step(tmp_path) -> None:
    """Mutant: steps() not passing --accept-removed to its Step: a kernel benched in one release and not the next
    failed the gate though accepted."""
    import json

    paths = benches(tmp_path, (DAWN[0], {}, {}), (DAWN[1], {}, {}))
    first = Path(paths[0])
    old = json.loads(first.read_text())
    old["rows"].append({**old["rows"][0], "kernel": "gemv_removed"})
    first.write_text(json.dumps(old))
    runs = releases(tmp_path, *DAWN)
    assert versions(tmp_path, runs, paths, "--fail-on-drift") == 1
    assert versions(tmp_path, runs, paths, "--fail-on-drift", "--accept-removed") == 0


def test_a_failed_gate_never_hides_an_interrupted_or_usage_exit() -> None:
    """Mutant: with_drift returning FAILED whenever the gate failed turned Ctrl-C's 130 into 1."""
    from q4gsw.report.verdict import FAILED, INTERRUPTED, OK, USAGE, with_drift

    assert [with_drift(code, 2, True) for code in (OK, FAILED, INTERRUPTED, USAGE)] == \
        [FAILED, FAILED, INTERRUPTED, USAGE]
    assert with_drift(OK, 2, False) == OK and with_drift(OK, 0, True) == OK


def test_bench_a_wrong_row_is_not_hidden_by_a_right_row_of_the_same_kernel(tmp_path, capsys) -> None:
    """A bench JSON timing a kernel twice on a shape, wrong then right: the last row was kept, exit 0."""
    from test_bench_drift import bench_file, row

    old = bench_file(tmp_path / "old.json", [row()])
    new = bench_file(tmp_path / "new.json", [{**row(), "correct": False, "message": "garbage out"}, row()])
    assert bench.main(["--compare", str(new), "--baseline", str(old)]) == 1
    assert "cpu_gemv: garbage out" in capsys.readouterr().err
