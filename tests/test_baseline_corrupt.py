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
from conftest import run_cli
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
    done = run_cli("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--results", str(tmp_path / "out"),
                   "--cache", str(tmp_path / "cache"), "--baseline", str(old), "--fail-on-drift", timeout=120)
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
