"""A corrupt --baseline is refused before any work (issue 29): one line naming the file, the case and the value,
exit 2, nothing written. A results.json changed since q4gsw wrote it (NaN, negative or text errors, a pass without
errors, malformed histograms, impossible tolerances) would otherwise be compared: a negative baseline error was
reported as drift, a NaN one made every comparison of the case 'same'."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_in_process
from helpers import assert_clean_usage_error, snapshot
from test_drift import META, case

from q4gsw.commands import report
from q4gsw.report.result import write_results

Row = dict[str, Any]


# No step summary and no pyplot: these tests read the reports' text, not the plots (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("quiet_reports")


def setter(*keys: str, value: Any) -> Callable[[Row], None]:
    def change(row: Row) -> None:
        for key in keys[:-1]:
            row = row[key]
        row[keys[-1]] = value
    return change


def dropper(key: str) -> Callable[[Row], None]:
    return lambda row: row.pop(key)


def histogram(change: Callable[[Row], None]) -> Callable[[Row], None]:
    return lambda row: change(row["errors"]["histogram"])


CORRUPT = [  # (id, what is done to the baseline's first result, what the one line says)
    ("nan-max-abs", setter("errors", "max_abs", value=math.nan), "errors.max_abs is nan"),
    ("negative-max-abs", setter("errors", "max_abs", value=-1e-6), "errors.max_abs is -1e-06 (negative)"),
    ("text-max-abs", setter("errors", "max_abs", value="3e-7"), "errors.max_abs is a str ('3e-7'), not a number"),
    ("bool-headroom", setter("errors", "headroom", value=True), "errors.headroom is a bool"),
    ("inf-headroom-in-a-pass", setter("errors", "headroom", value=math.inf), "errors.headroom is inf"),
    ("no-errors", dropper("errors"), "a pass with no 'errors'"),
    ("errors-text", setter("errors", value="small"), "'errors' is a str ('small'), not an object"),
    ("histogram-list", setter("errors", "histogram", value=[1, 2]), "errors.histogram is a list, not an object"),
    ("histogram-short", histogram(lambda h: h["counts"].pop()), "errors.histogram has 71 counts for 73 edges"),
    ("histogram-negative", histogram(lambda h: h["counts"].__setitem__(3, -5)),
     "errors.histogram.counts[3] is -5, not a count"),
    ("histogram-text-zero", histogram(lambda h: h.__setitem__("zero", "many")),
     "errors.histogram.zero is a str ('many'), not a count"),
    ("histogram-unsorted", histogram(lambda h: h["log10_edges"].reverse()),
     "errors.histogram.log10_edges are not increasing"),
    ("negative-atol", setter("tolerance", "atol", value=-1.0), "tolerance.atol is -1.0 (negative)"),
    ("unknown-status", setter("status", value="passed"), "status 'passed' is not one of pass, fail, skip, unsupported"),
    # counts and the text cases are matched by: a NaN count more, an int case id, broke the comparison after the run
    ("text-nonfinite", setter("errors", "nonfinite", value="many"), "errors.nonfinite is 'many', not a count"),
    ("float-mismatches", setter("errors", "mismatches", value=1.5), "errors.mismatches is 1.5, not a count"),
    ("int-kernel", setter("kernel", value=7), "'kernel' is an int (7), not text"),
    ("provenance-text", setter("provenance", value="x"), "'provenance' is a str ('x'), not an object"),
    ("kernel-source-list", setter("provenance", "kernel_source", value=["a"]),
     "'provenance.kernel_source' is a list, not text"),
]


def corrupt_baseline(folder: Path, change: Callable[[Row], None]) -> Path:
    write_results(folder / "results.json", [case(), case(kernel="cpu_tiled")], META)
    payload = json.loads((folder / "results.json").read_text())
    change(payload["results"][0])
    (folder / "results.json").write_text(json.dumps(payload))
    return folder


@pytest.mark.parametrize("change, says", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_report_refuses_a_corrupt_baseline_before_writing_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   change: Callable[[Row], None], says: str) -> None:
    new = tmp_path / "new"
    write_results(new / "results.json", [case(scale=4.0), case(kernel="cpu_tiled")], META)
    before = snapshot(new)
    old = corrupt_baseline(tmp_path / "old", change)
    assert report.main([str(new), "--baseline", str(old), "--fail-on-drift"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: --baseline {old / 'results.json'}: result 0 "
                           "(kv_proj/cpu_gemv/normal@swiftshader): "), line
    assert says in line and "rerun the baseline" in line
    assert snapshot(new) == before


def test_a_failed_case_may_record_nan_errors(tmp_path: Path) -> None:
    """A broken golden makes |y - g| NaN: a real run writes it, for a failed case, and it is read."""
    def failed_with_nan(row: Row) -> None:
        row.update(status="fail")
        row["errors"].update(max_abs=math.nan, max_rel=math.nan, headroom=math.nan)

    old = corrupt_baseline(tmp_path / "old", failed_with_nan)
    new = tmp_path / "new"
    write_results(new / "results.json", [case(), case(kernel="cpu_tiled")], META)
    assert report.main([str(new), "--baseline", str(old), "--quiet"]) == 0


def test_run_refuses_a_corrupt_baseline_before_any_work(tmp_path: Path, tiny_matrix: Path) -> None:
    old = corrupt_baseline(tmp_path / "old", setter("errors", "max_abs", value=-1e-6))
    done = cli_in_process("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--results",
                          str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--baseline", str(old),
                          "--fail-on-drift")
    assert_clean_usage_error(done, "key '--baseline'", "errors.max_abs is -1e-06 (negative)")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out" / "results.json").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("version", ["2", None, [3]])
def test_a_schema_version_that_is_no_number_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        version: Any) -> None:
    """It was compared with 3 ('<' not supported between 'str' and 'int', in the line)."""
    new = tmp_path / "new"
    write_results(new / "results.json", [case()], META)
    old = corrupt_baseline(tmp_path / "old", lambda row: None)
    payload = json.loads((old / "results.json").read_text())
    (old / "results.json").write_text(json.dumps({**payload, "schema_version": version}))
    assert report.main([str(new), "--baseline", str(old), "--fail-on-drift"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert f"schema_version is {version!r}, not a whole number" in line and "not supported" not in line, line


# ---- reading a baseline, and the options that take one, called directly (issue #29's mutation audit) ----


def test_read_baseline_names_the_file_and_what_is_wrong_with_it(tmp_path: Path) -> None:
    from q4gsw.drift.baseline import FIX, BaselineError, read_baseline

    def refused(path: Path) -> BaselineError:
        with pytest.raises(BaselineError) as raised:
            read_baseline(path)
        return raised.value

    missing = refused(tmp_path / "nowhere")
    assert (missing.path, missing.problem, missing.fix) == (tmp_path / "nowhere", "no such file or folder", FIX)
    assert str(missing) == f"{tmp_path / 'nowhere'}: no such file or folder: {FIX}"
    (tmp_path / "empty").mkdir()
    assert refused(tmp_path / "empty").problem == "holds no results.json"
    (tmp_path / "text.json").write_text("not json")
    assert refused(tmp_path / "text.json").problem == "is not a q4gsw results.json (JSONDecodeError)"
    (tmp_path / "list.json").write_text("[]")
    listed = refused(tmp_path / "list.json")
    assert (listed.problem, listed.fix) == ("is not a q4gsw results.json (no 'results' list)", FIX)
    (tmp_path / "bench.json").write_text(json.dumps({"rows": []}))
    bench = refused(tmp_path / "bench.json")
    assert bench.problem == "is a bench JSON (from `q4gsw bench`), not a results.json"
    assert bench.fix == "compare bench JSONs with `python -m q4gsw bench --baseline OLD.json`"
    (tmp_path / "odd.json").write_text(json.dumps({"results": [{"config": "a"}]}))
    odd = refused(tmp_path / "odd.json")
    assert odd.path == tmp_path / "odd.json" and odd.problem.startswith("has results q4gsw cannot read (TypeError: ")


def test_a_baseline_folder_holding_only_merged_reports_is_read_whole(tmp_path: Path) -> None:
    from q4gsw.drift.baseline import read_baseline

    merged = tmp_path / "merged" / "table" / "results.json"
    merged.parent.mkdir(parents=True)
    write_results(merged, [case(), case(kernel="cpu_tiled")], {**META, "merged_from": ["a", "b"]})
    baseline = read_baseline(tmp_path / "merged")
    assert baseline.label == str(tmp_path / "merged") and baseline.sources == (merged,)
    assert [r.kernel for r in baseline.results] == ["cpu_gemv", "cpu_tiled"]
    assert (baseline.factor, baseline.fail_on_drift, baseline.accept_removed, baseline.accept_new) == (
        2.0, False, False, False)


def _args(**given: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(**{"command": "run", "baseline": None, "drift_factor": 2.0, "fail_on_drift": False,
                              "accept_removed": False, "accept_new": False, **given})


def test_baseline_from_args_carries_every_option_and_refuses_a_lone_gate_option(tmp_path: Path) -> None:
    from q4gsw.drift.baseline import LoneGateOption, baseline_from_args

    folder = tmp_path / "old"
    write_results(folder / "results.json", [case()], META)
    assert baseline_from_args(_args()) is None
    baseline = baseline_from_args(_args(baseline=folder, drift_factor=3.0, fail_on_drift=True, accept_removed=True,
                                        accept_new=True))
    assert (baseline.label, baseline.factor, baseline.fail_on_drift, baseline.accept_removed,
            baseline.accept_new) == (str(folder), 3.0, True, True, True)
    assert baseline.sources == (folder / "results.json",) and len(baseline.results) == 1
    with pytest.raises(LoneGateOption) as raised:
        baseline_from_args(_args(accept_removed=True, accept_new=True))
    lone = raised.value
    assert lone.option == "--accept-removed"
    assert lone.problem == "needs --baseline OLD (the run to compare with): without one nothing is compared, no " \
                           "gate runs"
    assert lone.fix == "add --baseline OLD, or drop --accept-removed and --accept-new"
    assert str(lone) == f"--accept-removed {lone.problem}: {lone.fix}"


def test_run_baseline_turns_a_bad_baseline_into_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    from q4gsw.drift.baseline import FIX, run_baseline
    from q4gsw.matrix.checker import MatrixError

    with pytest.raises(MatrixError) as raised:
        run_baseline(_args(command="check", baseline=tmp_path / "nowhere"))
    error = raised.value
    assert (error.path, error.where, error.key) == ("command line", "check", "--baseline")
    assert (error.problem, error.fix) == (f"{tmp_path / 'nowhere'}: no such file or folder", FIX)
    with pytest.raises(MatrixError) as raised:
        run_baseline(_args(fail_on_drift=True))
    assert (raised.value.path, raised.value.where, raised.value.key) == ("command line", "run", "--fail-on-drift")
    assert raised.value.problem == "needs --baseline OLD (the run to compare with): without one nothing is " \
                                   "compared, no gate runs"
    assert raised.value.fix == "add --baseline OLD, or drop --fail-on-drift"
    assert run_baseline(_args()) is None


def test_diff_with_says_why_a_comparison_broke_instead_of_raising(tmp_path: Path, monkeypatch) -> None:
    from q4gsw.drift import baseline as baseline_module
    from q4gsw.drift.baseline import Baseline, diff_with

    old = Baseline("old", (case(),), factor=3.0, accept_removed=True)
    comparison, problem = diff_with(old, [case()])
    assert problem == "" and comparison.factor == 3.0 and comparison.accept_removed is True
    assert comparison.counts()["same"] == 1

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("case_id")

    monkeypatch.setattr(baseline_module, "diff_runs", broken)
    assert diff_with(old, [case()]) == (None, "the comparison with the baseline old failed (KeyError: 'case_id'); "
                                              "the results are written without it")
