"""The drift gate (`--fail-on-drift` on run, check and report; issue 29): never green on a regression.

A case that went from pass to fail, unsupported or skip fails it; a case the baseline measured that this run's
selection covered and did not measure fails it (unless --accept-removed); a comparison of nothing fails it. Cases
outside a scoped run (`run --config X`) stay outside. Offline: results written with the real writers, `run`'s finish
driven with a stand-in for the engine (q4gsw.run.finish.run_selection)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import write_matrix
from test_drift import META, case

from q4gsw.cases import build_selection
from q4gsw.commands import report
from q4gsw.drift.baseline import Baseline
from q4gsw.drift.rule import Scope, diff_runs
from q4gsw.matrix.load import load_matrix
from q4gsw.report.result import Result, write_results
from q4gsw.run import finish
from q4gsw.run.exporter import FixtureSource
from q4gsw.run.options import RunOptions

# No step summary and no pyplot: these tests read the reports' text, not the plots (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("quiet_reports")


def written(folder: Path, results: Sequence[Result]) -> Path:
    write_results(folder / "results.json", list(results), META)
    return folder


def broken(result: Result, status: str = "fail", scale: float = 1e7) -> Result:
    """The case gone wrong: its status changed, its error `scale` times larger."""
    errors = replace(result.errors, max_abs=result.errors.max_abs * scale) if result.errors else None
    return replace(result, status=status, message=f"{status} now", errors=errors if status == "fail" else None)


def gate(tmp_path: Path, old: Sequence[Result], new: Sequence[Result], *extra: str) -> int:
    return report.main([str(written(tmp_path / "new", new)), "--baseline", str(written(tmp_path / "old", old)),
                        "--fail-on-drift", "--quiet", *extra])


# ------------------------------------------------------------------------------------------------
# report NEW --baseline OLD --fail-on-drift
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["fail", "unsupported", "skip"])
def test_report_a_case_that_stopped_passing_fails_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           status: str) -> None:
    """PASS -> FAIL with a 1e7x larger error exited 0: only kind 'drift' counted."""
    old = [case(), case(kernel="cpu_tiled")]
    assert gate(tmp_path, old, [broken(case(), status), case(kernel="cpu_tiled")]) == 1
    out = capsys.readouterr().out
    assert f"REGRESSED kv_proj/cpu_gemv/normal@swiftshader: status pass -> {status}" in out
    # junit.xml: a failure, not a skip, so a CI reading only junit.xml is not green either
    testcase = next(c for c in ET.parse(tmp_path / "new" / "junit.xml").getroot().iter("testcase")
                    if c.get("name") == "kv_proj/cpu_gemv/normal")
    assert testcase.find("failure") is not None and testcase.find("skipped") is None
    # reported, not failed, without --fail-on-drift (for a fail, report's exit code is not a verdict either)
    assert report.main([str(tmp_path / "new"), "--baseline", str(tmp_path / "old"), "--quiet"]) == 0


def test_report_a_case_that_started_passing_or_a_mutant_now_caught_is_no_regression(tmp_path: Path) -> None:
    old = [broken(case()), replace(case(kernel="mutant_x"), role="mutant")]
    new = [case(), broken(replace(case(kernel="mutant_x"), role="mutant"))]
    assert gate(tmp_path, old, new) == 0


def test_report_a_measured_case_missing_now_fails_the_gate_unless_accepted(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A deleted kernel's cases: vanished, 'never an error', so the gate stayed green."""
    old = [case(), case(kernel="deleted_kernel")]
    assert gate(tmp_path, old, [case()]) == 1
    out = capsys.readouterr().out
    assert "REMOVED kv_proj/deleted_kernel/normal@swiftshader: measured (pass) in the baseline, not now" in out
    assert "kernel 'deleted_kernel' ran on no config" in out
    assert gate(tmp_path, old, [case()], "--accept-removed") == 0
    # A baseline row that measured nothing (a skip) is not a removal.
    assert gate(tmp_path, [case(), replace(case(kernel="skipped"), status="skip")], [case()]) == 0


def test_report_a_kernel_that_stopped_applying_to_a_config_is_named(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Its `when` stopped holding for one config: it still ran on another, so the reason says so."""
    old = [case(), case(kernel="cpu_tiled"), case(config="q_proj")]
    assert gate(tmp_path, old, [case(kernel="cpu_tiled"), case(config="q_proj")]) == 1
    assert "kernel 'cpu_gemv' ran on other configs of this run, not on this one" in capsys.readouterr().out


def test_report_an_empty_new_file_fails_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(tmp_path, [case(), case(kernel="cpu_tiled")], []) == 1
    out = capsys.readouterr().out
    assert "REMOVED kv_proj/cpu_gemv/normal@swiftshader" in out and "0 cases compared" in out


def test_report_a_baseline_of_another_backend_compares_nothing_and_fails_the_gate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = [replace(case(), backend="lavapipe", case_id="kv_proj/cpu_gemv/normal@lavapipe")]
    assert gate(tmp_path, other, [case()], "--accept-removed") == 1
    out = capsys.readouterr().out
    assert "NOTHING COMPARED: 0 cases compared" in out
    assert "the baseline holds backend lavapipe; these results: backend swiftshader" in out
    # reported only without --fail-on-drift
    assert report.main([str(tmp_path / "new"), "--baseline", str(tmp_path / "old"), "--quiet"]) == 0


def test_the_gate_lines_and_the_verdict_line(tmp_path: Path) -> None:
    old = [case(), case(kernel="cpu_tiled"), case(kernel="deleted")]
    comparison = diff_runs(old, [case(scale=4.0), broken(case(kernel="cpu_tiled"))], label="old")
    lines = comparison.gate()
    assert [line.split()[0] for line in lines] == ["DRIFT", "REGRESSED", "REMOVED"]
    assert comparison.gate_line() == "gate: fails: 1 drifted, 1 stopped passing, 1 removed"
    accepted = diff_runs(old, [case(), case(kernel="cpu_tiled")], label="old", accept_removed=True)
    assert accepted.gate() == [] and accepted.gate_line().startswith("gate: holds")


# ------------------------------------------------------------------------------------------------
# run --baseline OLD --fail-on-drift (the finish of a run, with the engine stood in for)
# ------------------------------------------------------------------------------------------------


def run_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: Sequence[Result], new: Sequence[Result],
             names: tuple[str, ...] = (), accept_removed: bool = False, accept_new: bool = False) -> int:
    """`run --config NAMES --baseline OLD --fail-on-drift` on a tiny matrix (configs b and h) whose engine
    produced `new`."""
    matrix = load_matrix(write_matrix(tmp_path / "matrix.toml", "bh"))
    selection = build_selection(matrix, "swiftshader", names=names, tiers=("required", "heavy"))

    def engine(selection, options, root, on_result=lambda r: None, matrix_order=()):
        for result in new:
            on_result(result)
        return list(new)

    monkeypatch.setattr(finish, "run_selection", engine)
    baseline = Baseline("old", tuple(old), fail_on_drift=True, accept_removed=accept_removed, accept_new=accept_new)
    options = RunOptions(fixtures=FixtureSource(None, tmp_path / "cache", matrix.path))
    return finish.run_and_report(selection, options, matrix.root, tmp_path / "results", matrix.path,
                                 baseline=baseline)


def of(config: str, kernel: str = "good", **extra: object) -> Result:
    return replace(case(config=config, kernel=kernel), case_id="", **extra)


def test_run_pass_to_unsupported_fails_the_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`run` exited 0 on PASS -> unsupported (another config still passing)."""
    old = [of("b"), of("h")]
    new = [replace(of("b"), status="unsupported", message="needs shader-f16", errors=None), of("h")]
    assert run_gate(tmp_path, monkeypatch, old, new) == 1
    assert "REGRESSED b/good/normal@swiftshader: status pass -> unsupported" in capsys.readouterr().out
    assert (tmp_path / "results" / "results.json").is_file()


def test_run_a_kernel_no_longer_measured_in_a_covered_config_fails_the_gate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    old = [of("b"), of("b", "gone"), of("h")]
    assert run_gate(tmp_path, monkeypatch, old, [of("b"), of("h")]) == 1
    assert "REMOVED b/gone/normal@swiftshader" in capsys.readouterr().out
    assert run_gate(tmp_path, monkeypatch, old, [of("b"), of("h")], accept_removed=True) == 0


def test_run_scoped_to_a_config_leaves_the_others_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    old = [of("b"), of("h"), of("h", "gone")]
    assert run_gate(tmp_path, monkeypatch, old, [of("b")], names=("b",)) == 0
    out = capsys.readouterr().out
    assert "2 baseline cases outside this run not compared" in out and "REMOVED" not in out


def test_run_a_baseline_of_another_backend_fails_the_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    old = [of("b", backend="lavapipe"), of("h", backend="lavapipe")]
    assert run_gate(tmp_path, monkeypatch, old, [of("b"), of("h")]) == 1
    assert "NOTHING COMPARED: 0 cases compared" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# Nothing lost: a comparison that breaks while the reports are written never discards the run
# ------------------------------------------------------------------------------------------------


def _breaks(*args: object, **kwargs: object) -> None:
    raise RuntimeError("the comparison broke")


# where it breaks, and the exit code under --fail-on-drift: 1 where the gate could not be decided
BREAKS = [("q4gsw.drift.baseline.diff_runs", 1), ("q4gsw.drift.rule.Comparison.gate", 1),
          ("q4gsw.drift.report.print_comparison", 1), ("q4gsw.drift.report.markdown_section", 0),
          ("q4gsw.drift.rule.Comparison.drift_by_case", 0)]


@pytest.mark.parametrize("where, code", BREAKS, ids=[b[0].rsplit(".", 1)[1] for b in BREAKS])
def test_run_a_comparison_that_breaks_never_loses_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], where: str,
                                                          code: int) -> None:
    monkeypatch.setattr(where, _breaks)
    assert run_gate(tmp_path, monkeypatch, [of("b"), of("h")], [of("b"), of("h")]) == code
    for name in ("results.json", "junit.xml", "summary.md"):
        assert (tmp_path / "results" / name).is_file(), name
    assert "| b |" in (tmp_path / "results" / "summary.md").read_text()
    err = capsys.readouterr().err
    assert "RuntimeError: the comparison broke" in err and "Traceback" not in err


@pytest.mark.parametrize("where, code", BREAKS, ids=[b[0].rsplit(".", 1)[1] for b in BREAKS])
def test_report_a_comparison_that_breaks_never_loses_the_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 where: str, code: int) -> None:
    monkeypatch.setattr(where, _breaks)
    new = written(tmp_path / "new", [case()])
    old = written(tmp_path / "old", [case()])
    assert report.main([str(new), "--baseline", str(old), "--quiet"]) == 0  # reported only
    assert report.main([str(new), "--baseline", str(old), "--quiet", "--fail-on-drift"]) == code
    assert (new / "junit.xml").is_file() and (new / "summary.md").is_file()
    assert "RuntimeError: the comparison broke" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# --accept-new: a CI shard whose every config was added since main's baseline run
# ------------------------------------------------------------------------------------------------


def test_run_a_shard_of_only_new_configs_compares_nothing_unless_accept_new(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """main's baseline measured config b; this shard runs config h, added since: nothing to compare. Without
    --accept-new that is NOTHING COMPARED (a failed gate: every new op's first CI run went red); with it the gate
    holds and says why."""
    old = [of("b")]
    assert run_gate(tmp_path, monkeypatch, old, [of("h")], names=("h",)) == 1
    assert "NOTHING COMPARED" in capsys.readouterr().out
    assert run_gate(tmp_path, monkeypatch, old, [of("h")], names=("h",), accept_new=True) == 0
    out = capsys.readouterr().out
    assert "gate: holds (nothing compared: 1 cases new since the baseline, accepted)" in out
    assert "NOTHING COMPARED" not in out


def test_accept_new_never_accepts_a_baseline_of_another_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Scoped to this run's backend the lavapipe baseline keeps no case: nothing vanished, every case 'new'. Only the
    backend check stands between that and a green gate (through `report` the vanished cases alone failed it)."""
    other = [of("b", backend="lavapipe"), of("h", backend="lavapipe")]
    assert run_gate(tmp_path, monkeypatch, other, [of("b"), of("h")], accept_new=True) == 1
    assert "NOTHING COMPARED: 0 cases compared" in capsys.readouterr().out


def test_accept_new_needs_a_baseline_that_measured_its_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A baseline whose rows on this backend are all skips measured nothing there: not a baseline of its backend."""
    skipped = [replace(of("b"), status="skip", errors=None, message="not run")]
    assert run_gate(tmp_path, monkeypatch, skipped, [of("h")], names=("h",), accept_new=True) == 1
    assert "NOTHING COMPARED" in capsys.readouterr().out


def test_accept_new_a_config_skipped_in_the_baseline_and_measured_now_is_new(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The baseline's row of config h is a config-level skip (h@swiftshader), now h's cases ran: that row vanished,
    but it measured nothing, so it is no removal and the run is all new (it read as NOTHING COMPARED)."""
    skip_h = replace(of("h"), status="skip", errors=None, kernel="", case_id="h@swiftshader", message="not run")
    assert run_gate(tmp_path, monkeypatch, [of("b"), skip_h], [of("h")], names=("h",), accept_new=True) == 0
    assert "gate: holds (nothing compared: 1 cases new since the baseline, accepted)" in capsys.readouterr().out


def test_accept_new_holds_the_gate_not_a_failing_new_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A new case that fails: the gate holds (nothing to compare it with), the run still fails on the case."""
    assert run_gate(tmp_path, monkeypatch, [of("b")], [broken(of("h"))], names=("h",), accept_new=True) == 1
    out = capsys.readouterr().out
    assert "gate: holds (nothing compared: 1 cases new since the baseline, accepted)" in out


def test_accept_new_the_held_gate_is_in_summary_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """summary.md's section read the NOTHING COMPARED line as gate()[-1], an IndexError once the gate held: the
    comparison was left out of summary.md with a note."""
    assert run_gate(tmp_path, monkeypatch, [of("b")], [of("h")], names=("h",), accept_new=True) == 0
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "**gate: holds (nothing compared: 1 cases new since the baseline, accepted)**" in summary
    assert "NOTHING COMPARED" not in summary and "written without the comparison" not in capsys.readouterr().err


def test_accept_new_reaches_the_gate_from_the_command_line(tmp_path: Path) -> None:
    from q4gsw.cli import build_parser
    from q4gsw.drift.baseline import run_baseline

    old = str(written(tmp_path / "old", [case()]))
    for command in (["run", "--backend", "swiftshader"], ["check", "--kernel", "k.wgsl", "--dispatch", "1",
                                                           "--backend", "swiftshader"]):
        args = build_parser().parse_args([*command, "--baseline", old, "--accept-new"])
        assert run_baseline(args).accept_new, command
        assert not run_baseline(build_parser().parse_args([*command, "--baseline", old])).accept_new, command


def test_report_refuses_accept_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """report compares every baseline case: one missing now is REMOVED, so --accept-new could never hold the gate
    there (a shard of only new configs: 'REMOVED' for all of main's cases, or NOTHING COMPARED with
    --accept-removed). A flag that silently does nothing is refused."""
    assert gate(tmp_path, [case()], [case(config="q_proj")], "--accept-new") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--accept-new does not apply to report" in err and "run --baseline" in err
    assert not (tmp_path / "new" / "summary.md").exists()


def test_accept_new_accepts_no_removal_and_no_run_that_measured_nothing(tmp_path: Path) -> None:
    """All new but a baseline case vanished: still REMOVED. All new but none measured (skips): still nothing."""
    old = [case(kernel="gone")]
    vanished = diff_runs(old, [case(config="q_proj")], label="old", accept_new=True)
    assert vanished.all_new == 0 and [line.split()[0] for line in vanished.gate()] == ["REMOVED", "NOTHING"]
    skipped = replace(case(config="q_proj"), status="skip", errors=None)
    nothing = diff_runs([case()], [skipped], label="old", accept_new=True, scope=None)
    assert nothing.all_new == 0
    scoped = diff_runs([case()], [skipped], label="old", accept_new=True,
                       scope=Scope("swiftshader", frozenset({"q_proj"})))
    assert scoped.all_new == 0 and scoped.gate()[0].startswith("NOTHING COMPARED")
    measured = diff_runs([case()], [case(config="q_proj")], label="old", accept_new=True,
                         scope=Scope("swiftshader", frozenset({"q_proj"})))
    assert measured.all_new == 1 and measured.gate() == []
    assert diff_runs([case()], [case(config="q_proj")], label="old",
                     scope=Scope("swiftshader", frozenset({"q_proj"}))).gate()[0].startswith("NOTHING COMPARED")


def test_accept_new_without_a_baseline_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(written(tmp_path / "new", [case()])), "--accept-new", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--accept-new needs --baseline" in err


def _executorch(result: Result) -> Result:
    """The case as `run --executorch TREE` records it: its kernel read from an ExecuTorch tree."""
    return replace(result, provenance=replace(result.provenance, kernel_source="executorch:/et:backends/webgpu/x.wgsl"))


def test_accept_new_never_accepts_a_baseline_of_another_kind_of_kernel() -> None:
    """`run --executorch TREE --baseline (a run of q4gsw's kernels) --accept-new`: scoped to ExecuTorch's kernels the
    baseline keeps no case, so every case was 'new since a baseline of its backend' and the gate held, comparing
    nothing with a baseline of another kind."""
    scope = Scope("swiftshader", frozenset({"kv_proj"}), "executorch")
    ours = diff_runs([case()], [_executorch(case())], label="old", accept_new=True, scope=scope)
    assert ours.all_new == 0 and not ours.new_accepted
    assert ours.gate() == ["NOTHING COMPARED: 0 cases compared with old: the baseline holds backend swiftshader; "
                           "these results: backend swiftshader; kernels of executorch"]
    theirs = diff_runs([case(), _executorch(case(config="q_proj"))], [_executorch(case())], label="old",
                       accept_new=True, scope=scope)
    assert theirs.all_new == 1 and theirs.gate() == []
