"""Baselines (q4gsw.drift.rule, baseline, drift_report, `report --baseline`, `run --baseline`): did a change move the
numbers? Results are built from real error arrays and written with the real writers; no GPU."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_in_process
from helpers import assert_clean_usage_error, write_matrix

from q4gsw.commands import report
from q4gsw.compare import compare as compare_arrays
from q4gsw.drift.rule import FLOOR_OF_ATOL, Scope, diff_runs, error_quantile, floor_for
from q4gsw.matrix.load import MatrixError, load_matrix
from q4gsw.report.histogram import error_histogram
from q4gsw.report.result import Result, Shape, Tolerance, write_results

TOL = Tolerance(atol=1e-5, rtol=1e-4, justification="K=2048 fp32 accumulation bound", source="config")
META = {"q4gsw_version": "0.1.0", "command": "python -m q4gsw run --backend swiftshader", "backend": "swiftshader",
        "started": "2026-11-25T15:35:22Z", "wall_s": 12.5, "host": "ci-host", "interrupted": False}
GOLDEN = np.random.default_rng(7).standard_normal((4, 512))
NOISE = np.random.default_rng(8).standard_normal((4, 512)) * 1e-7  # a kernel's rounding error, far inside TOL


def case(config: str = "kv_proj", kernel: str = "cpu_gemv", scale: float = 1.0, noise: np.ndarray = NOISE,
         **extra: object) -> Result:
    """A case judged by the real compare() and histogram from a kernel output of golden + scale * noise."""
    y = GOLDEN + scale * noise  # float64: the errors are exactly the noise, not fp32 rounding of it
    judged = compare_arrays(y, GOLDEN, TOL)
    errors = replace(judged.errors, histogram=error_histogram(y, GOLDEN))
    return Result(config=config, backend="swiftshader", status="pass" if judged.passed else "fail",
                  message=judged.message, case_id=f"{config}/{kernel}/normal@swiftshader", tier="required",
                  suite="llama", kernel=kernel, input="normal", tolerance=TOL,
                  shape=Shape({"M": 4, "K": 2048, "N": 512, "group_size": 32}, "4x2048x512 gs=32"),
                  errors=errors, reproduce=f"nox -s accuracy-swiftshader -- --config {config}", **extra)


def run_of(*results: Result) -> list[Result]:
    return list(results)


# No step summary and no pyplot: these tests read the reports' text, not the plots (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("quiet_reports")


def written(folder: Path, results: list[Result]) -> Path:
    write_results(folder / "results.json", results, META)
    return folder


# ------------------------------------------------------------------------------------------------
# The rule
# ------------------------------------------------------------------------------------------------


def test_the_same_run_twice_moves_nothing() -> None:
    old = run_of(case(), case(kernel="cpu_tiled"), case(config="q_proj"))
    comparison = diff_runs(old, run_of(case(), case(kernel="cpu_tiled"), case(config="q_proj")), label="old")
    assert comparison.counts() == {"drift": 0, "status": 0, "improved": 0, "new": 0, "vanished": 0, "same": 3}
    assert comparison.line().startswith("0 drifted, 0 changed status, 0 improved, 0 new, 0 vanished (3 cases")


def test_four_times_the_error_inside_the_tolerance_is_drift() -> None:
    new = case(scale=4.0)
    assert new.status == "pass" and new.errors.headroom < 0.2  # still well inside the tolerance
    comparison = diff_runs([case()], [new], label="old")
    [moved] = comparison.drifted
    by_name = {m.name: m for m in moved.measures}
    assert by_name["max |err|"].ratio == pytest.approx(4.0, rel=0.02)
    assert by_name["median |err|"].ratio == pytest.approx(4.0, rel=0.15)  # read from the histograms' bins
    assert moved.headroom_ratio == pytest.approx(4.0, rel=0.02)
    assert "max |err|" in moved.reason() and "> factor 2" in moved.reason()
    # The mirror image is an improvement, listed but never drift.
    assert diff_runs([new], [case()], label="old").counts()["improved"] == 1


def test_growth_below_the_factor_is_not_drift_and_the_factor_is_configurable() -> None:
    assert diff_runs([case()], [case(scale=1.8)], label="old").counts()["same"] == 1
    assert diff_runs([case()], [case(scale=4.0)], label="old", factor=5.0).counts()["same"] == 1
    # The config's own drift_factor (matrix.toml, recorded in each result) wins over --drift-factor.
    assert diff_runs([case()], [case(scale=4.0, drift_factor=5.0)], label="old").counts()["same"] == 1
    assert diff_runs([case()], [case(scale=1.8, drift_factor=1.5)], label="old", factor=5.0).counts()["drift"] == 1


def test_a_shift_of_the_distribution_alone_is_drift() -> None:
    """The maximum stays where it was, most errors grow 5x: the median (from the histograms) catches it."""
    noise = NOISE.copy()
    flat = noise.ravel()
    peak = int(np.argmax(np.abs(flat)))
    grown = flat * 5
    grown[peak] = flat[peak]  # the largest error unchanged
    shifted = grown.reshape(NOISE.shape)
    if np.abs(shifted).max() > abs(flat[peak]):  # keep the old maximum the maximum
        shifted = np.clip(shifted, -abs(flat[peak]), abs(flat[peak]))
    [moved] = diff_runs([case()], [case(noise=shifted)], label="old").drifted
    assert [m.name for m in moved.measures if m.new > 2 * m.old] == ["median |err|"]


def test_an_exact_baseline_drifts_only_past_the_floor() -> None:
    """Errors of 0 in the baseline: the ratio is taken against a floor of 1e-3 of atol."""
    exact = case(noise=np.zeros_like(NOISE))
    assert exact.errors.max_abs == 0
    floor = FLOOR_OF_ATOL * TOL.atol
    tiny = np.zeros_like(NOISE)
    tiny[0, 0] = floor * 1.5  # 1.5x the floor: under the factor
    assert diff_runs([exact], [case(noise=tiny)], label="old").counts()["same"] == 1
    tiny[0, 0] = floor * 3
    [moved] = diff_runs([exact], [case(noise=tiny)], label="old").drifted
    assert moved.measures[0].ratio == pytest.approx(3.0, rel=0.01)
    # Exact on both sides: nothing moved.
    assert diff_runs([exact], [exact], label="old").counts()["same"] == 1
    # No floor (atol 0): any error where there was none is drift.
    no_atol = Tolerance(0.0, 1e-4, "relative only")
    [moved] = diff_runs([replace(exact, tolerance=no_atol)], [replace(case(noise=tiny), tolerance=no_atol)],
                      label="old").drifted
    assert math.isinf(moved.measures[0].ratio) and "where the baseline had none" in moved.reason()


def test_an_exact_run_under_an_rtol_only_tolerance_is_the_same_as_itself() -> None:
    """atol 0 leaves no floor: 0 against 0 is 'same' (drift and improvement need new > factor * old, strictly;
    at >= an exact kernel would drift against its own run)."""
    no_atol = Tolerance(0.0, 1e-4, "relative only")
    exact = replace(case(noise=np.zeros_like(NOISE)), tolerance=no_atol)
    assert exact.errors.max_abs == 0 and floor_for(exact, exact) == 0
    comparison = diff_runs([exact], [exact], label="old")
    assert comparison.counts()["same"] == 1 and comparison.counts()["drift"] == 0
    assert [d.kind for d in comparison.deltas] == ["same"]


def test_new_vanished_and_changed_status_cases() -> None:
    old = [case(), case(kernel="removed_kernel"), case(config="gone_config"), case(config="q_proj"),
           replace(case(config="broken"), status="fail")]
    new = [case(), case(kernel="added_kernel"), replace(case(config="q_proj"), status="fail", message="12 out"),
           case(config="broken")]
    comparison = diff_runs(old, new, label="old")
    assert {d.key: d.kind for d in comparison.deltas} == {
        "kv_proj/cpu_gemv/normal@swiftshader": "same", "kv_proj/added_kernel/normal@swiftshader": "new",
        "kv_proj/removed_kernel/normal@swiftshader": "vanished", "gone_config/cpu_gemv/normal@swiftshader": "vanished",
        "q_proj/cpu_gemv/normal@swiftshader": "status", "broken/cpu_gemv/normal@swiftshader": "status"}
    assert [d.kind for d in comparison.deltas] == ["status", "status", "new", "vanished", "vanished", "same"]
    assert comparison.of("status")[0].reason() == "status pass -> fail: 12 out"  # why it stopped passing
    # A run's scope: baseline cases of configs it did not run are not compared, never vanished.
    scoped = diff_runs(old, [case()], label="old", scope=Scope("swiftshader", frozenset({"kv_proj"})))
    assert scoped.counts()["vanished"] == 1 and scoped.not_compared == 3  # removed_kernel vanished: same config


def test_a_baseline_of_an_older_q4gsw_without_case_ids_or_histograms_is_compared() -> None:
    old = replace(case(), case_id="", errors=replace(case().errors, histogram={}))
    comparison = diff_runs([old], [case(scale=4.0)], label="old")
    [moved] = comparison.drifted
    assert [m.name for m in moved.measures] == ["max |err|"]


def test_error_quantile_reads_the_histogram() -> None:
    g = np.zeros(1000)
    y = np.concatenate([np.zeros(500), np.full(500, 1e-6)])
    hist = error_histogram(y, g)
    assert error_quantile(hist, 0.25) == 0.0
    assert error_quantile(hist, 0.9) == pytest.approx(1e-6, rel=0.8)  # inside its quarter-decade bin
    assert error_quantile({}, 0.5) is None


# ------------------------------------------------------------------------------------------------
# report --baseline: console, summary.md, junit.xml, exit codes
# ------------------------------------------------------------------------------------------------


def test_report_of_an_identical_run_says_no_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = written(tmp_path / "old", run_of(case(), case(kernel="cpu_tiled")))
    new = written(tmp_path / "new", run_of(case(), case(kernel="cpu_tiled")))
    assert report.main([str(new), "--baseline", str(old), "--fail-on-drift"]) == 0
    out = capsys.readouterr().out
    assert f"baseline: 0 drifted, 0 changed status, 0 improved, 0 new, 0 vanished (2 cases compared with {old})" in out
    summary = (new / "summary.md").read_text()
    assert "### Compared with the baseline" in summary and "No case moved." in summary


def test_report_lists_drift_everywhere_and_fails_only_on_request(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    old = written(tmp_path / "old", run_of(case(), case(kernel="cpu_tiled")))
    new = written(tmp_path / "new", run_of(case(scale=4.0), case(kernel="cpu_tiled")))
    assert report.main([str(new), "--baseline", str(old)]) == 0  # reported, not failed
    out = capsys.readouterr().out
    assert "DRIFT kv_proj/cpu_gemv/normal@swiftshader: max |err|" in out
    assert "baseline: 1 drifted" in out
    summary = (new / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if "DRIFT" in line)
    assert "`kv_proj/cpu_gemv/normal@swiftshader`" in row and "4.0" in row
    assert summary.index("Compared with the baseline") < summary.index("| status |")  # above the full table
    cases = {c.get("name"): c for c in ET.parse(new / "junit.xml").getroot().iter("testcase")}
    drifted = cases["kv_proj/cpu_gemv/normal"]
    props = {p.get("name"): p.get("value") for p in drifted.find("properties")}
    assert "max |err|" in props["drift"]
    assert drifted.find("failure") is None  # without --fail-on-drift, a property, not a failure
    assert "drift" not in {p.get("name") for p in cases["kv_proj/cpu_tiled/normal"].iter("property")}

    assert report.main([str(new), "--baseline", str(old), "--fail-on-drift"]) == 1
    root = ET.parse(new / "junit.xml").getroot()
    failure = next(c for c in root.iter("testcase") if c.get("name") == "kv_proj/cpu_gemv/normal").find("failure")
    assert failure.get("type") == "AccuracyDrift" and root.get("failures") == "1"
    # --drift-factor above the growth: no drift.
    assert report.main([str(new), "--baseline", str(old), "--fail-on-drift", "--drift-factor", "6"]) == 0


def test_strict_and_drift_together(tmp_path: Path) -> None:
    old = written(tmp_path / "old", run_of(case()))
    new = written(tmp_path / "new", run_of(case(scale=4.0)))
    assert report.main([str(new), "--baseline", str(old), "--strict"]) == 0
    assert report.main([str(new), "--baseline", str(old), "--strict", "--fail-on-drift"]) == 1


def test_a_baseline_with_vanished_configs_and_kernels_is_no_crash(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    old = written(tmp_path / "old", run_of(case(), case(config="removed", kernel="old_kernel"),
                                          replace(case(), case_id="kv_proj/cpu_gemv/normal@gone_backend",
                                                  backend="gone_backend")))
    new = written(tmp_path / "new", run_of(case(), case(kernel="new_kernel")))
    assert report.main([str(new), "--baseline", str(old), "--fail-on-drift"]) == 1  # measured cases lost (gate)
    assert "REMOVED kv_proj/cpu_gemv/normal@gone_backend: measured (pass) in the baseline, not now: backend " \
        "'gone_backend' measured no case in these results" in capsys.readouterr().out
    assert report.main([str(new), "--baseline", str(old), "--fail-on-drift", "--accept-removed"]) == 0
    out = capsys.readouterr().out
    assert "vanished: removed/old_kernel/normal@swiftshader, kv_proj/cpu_gemv/normal@gone_backend" in out
    assert "new: kv_proj/new_kernel/normal@swiftshader" in out
    assert "2 vanished" in (new / "summary.md").read_text()


def _bench_json(tmp_path: Path) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"backend": "swiftshader", "rows": [{"shape": "1x8x8", "kernel": "k"}]}))
    return path


def _not_results(tmp_path: Path) -> Path:
    path = tmp_path / "notes.json"
    path.write_text('{"hello": 1}')
    return path


def _not_json(tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    path.write_text("config,kernel\n")
    return path


def _empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


BAD_BASELINES = [("missing", lambda p: p / "nope", "no such file or folder"),
                 ("a-bench-json", _bench_json, "is a bench JSON (from `q4gsw bench`), not a results.json: compare "
                                               "bench JSONs with `python -m q4gsw bench --baseline OLD.json`"),
                 ("not-results", _not_results, "is not a q4gsw results.json (no 'results' list)"),
                 ("not-json", _not_json, "is not a q4gsw results.json (JSONDecodeError)"),
                 ("no-results-json", _empty_folder, "holds no results.json")]


@pytest.mark.parametrize("make, says", [b[1:] for b in BAD_BASELINES], ids=[b[0] for b in BAD_BASELINES])
def test_report_with_a_bad_baseline_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           make, says: str) -> None:
    new = written(tmp_path / "new", run_of(case()))
    before = sorted(p.name for p in new.iterdir())
    bad = make(tmp_path)
    assert report.main([str(new), "--baseline", str(bad)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: --baseline {bad}") and says in line
    assert sorted(p.name for p in new.iterdir()) == before  # nothing written


def test_run_with_a_bad_baseline_is_a_usage_error_before_any_work(tmp_path: Path, tiny_matrix: Path) -> None:
    bench = _bench_json(tmp_path)
    done = cli_in_process("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--results",
                          str(tmp_path / "out"), "--baseline", str(bench))
    assert done.returncode == 2, done.stdout + done.stderr
    assert_clean_usage_error(done, "--baseline", str(bench), "bench --baseline OLD.json")
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("value", ["1", "0.5", "x", "inf"])
def test_drift_factor_must_exceed_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    new = written(tmp_path / "new", run_of(case()))
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(new), "--baseline", str(new), "--drift-factor", value])
    assert exit_info.value.code == 2
    assert "--drift-factor" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# drift_factor in matrix.toml
# ------------------------------------------------------------------------------------------------


def test_matrix_drift_factor_per_config(tmp_path: Path) -> None:
    path = write_matrix(tmp_path / "matrix.toml", "bh", replace=(('name = "b"', 'name = "b"\ndrift_factor = 3.0'),))
    assert [c.drift_factor for c in load_matrix(path).configs] == [3.0, None]
    write_matrix(path, "bh", replace=(('name = "b"', 'name = "b"\ndrift_factor = 1'),))
    with pytest.raises(MatrixError, match=r"drift_factor.*must be greater than 1"):
        load_matrix(path)


def test_report_never_writes_over_its_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = written(tmp_path / "old", run_of(case()))
    new = written(tmp_path / "new", run_of(case(scale=4.0)))
    before = (old / "results.json").read_bytes()
    assert report.main([str(new), "--out", str(old), "--baseline", str(old)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert (old / "results.json").read_bytes() == before


# ------------------------------------------------------------------------------------------------
# The drift report's text, worked out by hand from a comparison built by hand (issue #29's mutation audit)
# ------------------------------------------------------------------------------------------------


def _judged(key: str, status: str = "pass", max_abs: float | None = None, headroom: float = 0.0,
            message: str = "") -> Result:
    from q4gsw.matrix.values import Errors

    errors = None if max_abs is None else Errors(max_abs=max_abs, max_rel=0.0, worst_index=(0, 0), mismatches=0,
                                                 elements=64, nmse=0.0, headroom=headroom)
    return Result(config=key.split("/")[0], backend="sw", status=status, message=message, case_id=key,
                  errors=errors)


def _hand_made_comparison(removed: int = 1, new: int = 1, **options: object):
    from q4gsw.drift.rule import CaseDelta, Comparison, Measure

    deltas = [
        CaseDelta("a/k/ramp@sw", "drift", _judged("a/k/ramp@sw", max_abs=1e-6, headroom=0.1),
                  _judged("a/k/ramp@sw", max_abs=4e-6, headroom=0.4),
                  measures=(Measure("max |err|", 1e-6, 4e-6, 4.0, 0.25),
                            Measure("median |err|", 1e-7, 5e-7, 5.0, 0.2))),
        CaseDelta("z/k/ramp@sw", "drift", _judged("z/k/ramp@sw", max_abs=0.0, headroom=0.0),
                  _judged("z/k/ramp@sw", max_abs=3e-6, headroom=0.3),
                  measures=(Measure("max |err|", 0.0, 3e-6, math.inf, 0.0),)),
        CaseDelta("b/k/ramp@sw", "status", _judged("b/k/ramp@sw", max_abs=1e-6, headroom=0.5),
                  _judged("b/k/ramp@sw", "fail", 2e-3, 12.5, "1/64 elements out of tolerance")),
        CaseDelta("c/k/ramp@sw", "improved", _judged("c/k/ramp@sw", max_abs=4e-6, headroom=0.8),
                  _judged("c/k/ramp@sw", max_abs=1e-6, headroom=0.2),
                  measures=(Measure("max |err|", 4e-6, 1e-6, 0.25, 4.0),)),
        *(CaseDelta(f"n{i}/k/ramp@sw", "new", None, _judged(f"n{i}/k/ramp@sw", max_abs=0.0)) for i in range(new)),
        *(CaseDelta(f"v{i}/k/ramp@sw", "vanished", _judged(f"v{i}/k/ramp@sw", max_abs=0.0), None,
                    why="its kernel was deleted") for i in range(removed)),
        CaseDelta("s/k/ramp@sw", "vanished", _judged("s/k/ramp@sw", "skip"), None, why="-"),
        CaseDelta("d/k/ramp@sw", "same", _judged("d/k/ramp@sw", max_abs=1e-6), _judged("d/k/ramp@sw", max_abs=1e-6)),
    ]
    return Comparison("old/results.json", tuple(deltas), not_compared=3, **options)


def test_summary_md_lists_every_moved_case_with_its_numbers_and_the_new_and_vanished_ids() -> None:
    from q4gsw.drift.report import markdown_section

    lines = markdown_section(_hand_made_comparison(), True).split("\n")
    assert lines[:6] == [
        "### Compared with the baseline", "",
        "**2 drifted, 1 changed status, 1 improved, 1 new, 2 vanished (5 cases compared with old/results.json); "
        "3 baseline cases outside this run not compared**", "",
        "**gate: fails: 2 drifted, 1 stopped passing, 1 removed**", ""]
    assert "factor 2 unless the config sets drift_factor" in lines[6] and lines[7] == ""
    assert lines[6].endswith("--fail-on-drift: a failed gate fails the run") and "\\|err\\|" in lines[6]
    assert lines[8:16] == [
        "| change | case | max \\|err\\| baseline | max \\|err\\| now | ratio | headroom baseline → now "
        "| median \\|err\\| ratio | why |",
        "|---|---|---|---|---|---|---|---|",
        "| 📈 DRIFT | `a/k/ramp@sw` | 1.00e-06 | 4.00e-06 | 4.00× | 0.100 → 0.400 | 5.00× "
        "| max \\|err\\| 1e-06 -> 4e-06 (4.00x); median \\|err\\| 1e-07 -> 5e-07 (5.00x) > factor 2 |",
        "| 📈 DRIFT | `z/k/ramp@sw` | 0.00e+00 | 3.00e-06 | ∞ | 0.000 → 0.300 |  "
        "| max \\|err\\| 0 -> 3e-06 (new where the baseline had none) > factor 2 |",
        "| 🔀 status | `b/k/ramp@sw` | 1.00e-06 | 2.00e-03 |  | 0.500 → 12.500 |  "
        "| status pass -> fail: 1/64 elements out of tolerance |",
        "| 📉 improved | `c/k/ramp@sw` | 4.00e-06 | 1.00e-06 | 0.25× | 0.800 → 0.200 |  "
        "| max \\|err\\| 4e-06 -> 1e-06 (/4) |",
        "",
        "<details><summary>1 new (not in the baseline)</summary>"]
    assert lines[16:] == [
        "", "- `n0/k/ramp@sw`", "", "</details>", "",
        "<details><summary>2 vanished (in the baseline, not in these results)</summary>", "",
        "- `v0/k/ramp@sw`: measured (pass) in the baseline, not now: its kernel was deleted",
        "- `s/k/ramp@sw`", "", "</details>", ""]


def test_summary_md_of_a_run_where_nothing_moved_or_nothing_was_compared() -> None:
    from q4gsw.drift.report import markdown_section
    from q4gsw.drift.rule import CaseDelta, Comparison

    same = CaseDelta("d/k/ramp@sw", "same", _judged("d/k/ramp@sw", max_abs=1e-6), _judged("d/k/ramp@sw", max_abs=1e-6))
    quiet = markdown_section(Comparison("old", (same,)), False, heading="v1 → v2").split("\n")
    assert quiet[0] == "### v1 → v2" and quiet[4] == "**gate: holds**"
    assert quiet[6].endswith("reported only (add --fail-on-drift to fail on it)")
    assert quiet[8:] == ["No case moved.", ""]
    new = CaseDelta("n/k/ramp@sw", "new", None, _judged("n/k/ramp@sw", max_abs=0.0))
    nothing = markdown_section(Comparison("old", (new,), nothing_why="the baseline holds no case"), True).split("\n")
    assert "No case moved." not in nothing  # a new case is listed instead
    assert nothing[-2:] == ["**NOTHING COMPARED: 0 cases compared with old: the baseline holds no case**", ""]


def test_the_rule_text_names_what_was_accepted() -> None:
    from q4gsw.drift.report import rule_text

    plain = rule_text(_hand_made_comparison(), False)
    assert "--accept-removed" not in plain and "--accept-new" not in plain
    assert "max(baseline, 0.001·atol); factor 2 unless" in plain
    both = rule_text(_hand_made_comparison(accept_removed=True, accept_new=True, factor=3.0), True)
    assert "a measured case missing now (accepted: --accept-removed) and a comparison of nothing (but for a run of " \
           "only new cases: --accept-new); --fail-on-drift" in both and "factor 3 unless" in both


def test_the_console_section_shows_the_moved_cases_the_gate_and_at_most_ten_ids() -> None:
    import re

    from rich.console import Console

    from q4gsw.drift.report import print_comparison

    console = Console(record=True, width=400, color_system=None)
    print_comparison(_hand_made_comparison(removed=12, new=13), True, console)
    lines = [line.rstrip() for line in console.export_text().split("\n")]  # rich pads the table to its width
    text = "\n".join(lines)
    assert lines[0] == "" and lines[1] == "compared with the baseline old/results.json"
    assert re.search(r"case\s+change\s+max \|err\| then\s+now\s+ratio\s+headroom\s+median ratio", text)
    for row in (r"a/k/ramp@sw\s+DRIFT\s+1\.00e-06\s+4\.00e-06\s+4\.00×\s+0\.100 → 0\.400\s+5\.00×",
                r"z/k/ramp@sw\s+DRIFT\s+0\.00e\+00\s+3\.00e-06\s+∞\s+0\.000 → 0\.300\n",
                r"b/k/ramp@sw\s+status\s+1\.00e-06\s+2\.00e-03\s+0\.500 → 12\.500\n",
                r"c/k/ramp@sw\s+improved\s+4\.00e-06\s+1\.00e-06\s+0\.25×\s+0\.800 → 0\.200\n"):
        assert re.search(row, text), row
    gate = [line for line in lines if line.split(" ", 1)[0] in ("DRIFT", "REGRESSED", "REMOVED")]
    assert gate[:3] == [
        "DRIFT a/k/ramp@sw: max |err| 1e-06 -> 4e-06 (4.00x); median |err| 1e-07 -> 5e-07 (5.00x) > factor 2",
        "DRIFT z/k/ramp@sw: max |err| 0 -> 3e-06 (new where the baseline had none) > factor 2",
        "REGRESSED b/k/ramp@sw: status pass -> fail: 1/64 elements out of tolerance"]
    assert gate[3:] == [f"REMOVED v{i}/k/ramp@sw: measured (pass) in the baseline, not now: its kernel was deleted "
                        "(--accept-removed accepts it)" for i in range(10)] + [
        "REMOVED … and 2 more (summary.md lists them all)"]  # ten of twelve
    assert f"new: {', '.join(f'n{i}/k/ramp@sw' for i in range(10))} … and 3 more" in lines
    assert f"vanished: {', '.join(f'v{i}/k/ramp@sw' for i in range(10))} … and 3 more" in lines  # 12 + s
    assert "baseline: 2 drifted, 1 changed status, 1 improved, 13 new, 13 vanished (5 cases compared with " \
           "old/results.json); 3 baseline cases outside this run not compared" in lines
    assert "gate: fails: 2 drifted, 1 stopped passing, 12 removed" in lines
    assert lines[-2].startswith("drift: max or median |err| > factor × max(baseline") and lines[-1] == ""


def test_the_console_section_of_a_run_where_nothing_moved_has_no_table() -> None:
    from rich.console import Console

    from q4gsw.drift.report import print_comparison
    from q4gsw.drift.rule import CaseDelta, Comparison

    console = Console(record=True, width=400, color_system=None)
    same = CaseDelta("d/k/ramp@sw", "same", _judged("d/k/ramp@sw", max_abs=1e-6), _judged("d/k/ramp@sw", max_abs=1e-6))
    print_comparison(Comparison("old", (same,)), False, console)
    lines = console.export_text().split("\n")
    assert lines[:3] == [
        "", "baseline: 0 drifted, 0 changed status, 0 improved, 0 new, 0 vanished (1 case compared with old)",
        "gate: holds"]
    assert lines[3].startswith("drift: max or median |err|") and lines[4:] == [""]


def test_show_comparison_counts_the_gates_reasons_and_says_why_there_is_none(capsys) -> None:
    from rich.console import Console

    from q4gsw.drift import report as drift_report

    console = Console(record=True, width=400, color_system=None)
    assert drift_report.show_comparison(_hand_made_comparison(), "", True, console) == 4  # 2 drift, 1 status, 1 gone
    assert drift_report.show_comparison(None, "", True, console) == 0 and capsys.readouterr().err == ""
    assert drift_report.show_comparison(None, "the baseline is a folder", True, console) == 1
    assert capsys.readouterr().err == "warning: the baseline is a folder; --fail-on-drift: the gate cannot hold\n"
    assert drift_report.show_comparison(None, "the baseline is a folder", False, console) == 1
    assert capsys.readouterr().err == "warning: the baseline is a folder\n"


def test_the_baseline_options_their_names_defaults_and_the_factors_messages() -> None:
    import argparse

    from q4gsw.drift.baseline import _factor, add_baseline_options

    parser = argparse.ArgumentParser(prog="q4gsw report")
    add_baseline_options(parser)
    assert "[--baseline OLD] [--drift-factor F] [--fail-on-drift] [--accept-removed] [--accept-new]" in \
        " ".join(parser.format_usage().split())
    assert "(default 2)" in " ".join(parser.format_help().split())
    defaults = parser.parse_args([])
    assert (defaults.baseline, defaults.drift_factor, defaults.fail_on_drift, defaults.accept_removed,
            defaults.accept_new) == (None, 2.0, False, False, False)
    given = parser.parse_args(["--baseline", "old", "--drift-factor", "3.5", "--fail-on-drift", "--accept-removed",
                               "--accept-new"])
    assert (given.baseline, given.drift_factor, given.fail_on_drift, given.accept_removed, given.accept_new) == (
        Path("old"), 3.5, True, True, True)
    for text, says in (("x", "'x' is not a number (e.g. 2 or 3.5)"),
                       ("1", "'1': the factor must be greater than 1 (e.g. 2: error may double)"),
                       ("nan", "'nan': the factor must be greater than 1")):
        with pytest.raises(argparse.ArgumentTypeError) as raised:
            _factor(text)
        assert str(raised.value).startswith(says)
    assert _factor("1.0001") == 1.0001


def test_the_bench_baseline_options_their_names_and_defaults() -> None:
    import argparse

    from q4gsw.drift.bench import add_bench_baseline_options

    parser = argparse.ArgumentParser(prog="q4gsw bench")
    add_bench_baseline_options(parser)
    assert "[--baseline OLD.json] [--compare NEW.json] [--min-slowdown FRACTION] [--fail-on-drift] " \
           "[--accept-removed]" in " ".join(parser.format_usage().split())
    assert "(default 0.1: 10 %)" in " ".join(parser.format_help().split())
    defaults = parser.parse_args([])
    assert (defaults.baseline, defaults.compare, defaults.min_slowdown, defaults.fail_on_drift,
            defaults.accept_removed) == (None, None, 0.1, False, False)
    given = parser.parse_args(["--baseline", "a.json", "--compare", "b.json", "--min-slowdown", "0.25",
                               "--fail-on-drift", "--accept-removed"])
    assert (given.baseline, given.compare, given.min_slowdown, given.fail_on_drift, given.accept_removed) == (
        Path("a.json"), Path("b.json"), 0.25, True, True)


def test_error_quantile_walks_zeros_then_below_then_the_bins_then_above() -> None:
    """Worked by hand: 7 errors: one exact zero, one below 1e-8, two in [1e-8, 1e-7), two in [1e-7, 1e-6), one above."""
    hist = {"log10_edges": [-8.0, -7.0, -6.0], "counts": [2, 2], "zero": 1, "below": 1, "above": 1}
    assert error_quantile(hist, 0.1) == 0.0  # 0.7 of 7: inside the zeros
    assert error_quantile(hist, 1 / 7) == 0.0  # exactly the zeros
    assert error_quantile(hist, 0.2) == 1e-8  # 1.4: among the errors below the first edge
    assert error_quantile(hist, 0.5) == pytest.approx(10 ** -7.25, rel=1e-12)  # 3.5: 0.75 of the way through bin 0
    assert error_quantile(hist, 0.75) == pytest.approx(10 ** -6.375, rel=1e-12)  # 5.25: 0.625 through bin 1
    assert error_quantile(hist, 1.0) == pytest.approx(1e-6, rel=1e-12)  # the one above sits at the top edge
    assert error_quantile({"log10_edges": [-8.0, -7.0, -6.0], "counts": [2, 2]}, 0.5) == pytest.approx(1e-7)
    assert error_quantile({"log10_edges": [-8.0, -7.0, -6.0], "counts": [0, 2]}, 0.5) == pytest.approx(10 ** -6.5)
    assert error_quantile({"log10_edges": [-8.0, -7.0, -6.0], "counts": [0, 0]}, 0.5) is None  # nothing recorded
    assert error_quantile({"log10_edges": [-8.0, -7.0], "counts": [1, 1]}, 0.5) is None  # edges do not fit counts
    assert error_quantile({"log10_edges": [], "counts": []}, 0.5) is None
