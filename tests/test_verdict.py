"""The verdict (q4gsw.report.verdict): the exit codes and the rules that fail a run, defined once;
a required config none
of whose cases can run fails with the reason (e2e, SwiftShader), and `report --strict` agrees with `run`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import GOOD_KERNEL, fake_result, results_of, write_fixtures, write_matrix

from q4gsw.report import verdict
from q4gsw.report.result import Result, write_results


def result(config: str, status: str, backend: str = "lavapipe") -> Result:
    return Result(config=config, backend=backend, status=status, message="")


def test_the_exit_codes_are_the_documented_ones():
    assert (verdict.OK, verdict.FAILED, verdict.USAGE, verdict.INTERRUPTED) == (0, 1, 2, 130)


def test_problems_say_why_results_fail_a_run():
    assert verdict.problems([result("a", "pass"), result("b", "skip")]) == []
    assert verdict.problems([result("a", "pass"), result("a", "fail")]) == ["1 failed"]
    assert verdict.problems([result("a", "skip")]) == ["no case passed: nothing was checked"]
    assert verdict.exit_code([result("a", "skip")]) == verdict.FAILED
    assert verdict.exit_code([result("a", "pass"), result("b", "skip")]) == verdict.OK
    assert verdict.exit_code([result("a", "pass")], interrupted=True) == verdict.INTERRUPTED


def test_a_required_config_that_ran_nothing_on_its_backend_is_named():
    results = [result("a", "fail"), result("b", "unsupported"), result("c", "pass", backend="swiftshader"),
               result("c", "unsupported")]
    required = [("a", "lavapipe"), ("b", "lavapipe"), ("c", "lavapipe"), ("b", "lavapipe")]
    assert verdict.required_not_run(results, required) == [("b", "lavapipe"), ("c", "lavapipe")]


# ------------------------------------------------------------------------------------------------
# A required config none of whose cases can run fails, with the reason; report --strict agrees (issue 14)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unrunnable:
    id: str
    matrix: dict[str, str] = field(default_factory=dict)  # write_matrix keyword arguments
    check_dispatch: str = ""  # run `check --kernel good.wgsl --dispatch THIS` instead of `run`
    says: str = ""  # the failing result's message contains this


UNRUNNABLE = [
    Unrunnable("when-never-holds", {"when": "M > 1000"}, says="no kernel applies to 1x64x16"),
    Unrunnable("missing-feature", {"kernel_extra": 'requires_features = ["no-such-feature"]'},
               says="needs adapter features ['no-such-feature']"),
    Unrunnable("missing-limit", {"kernel_extra": "requires_limits = { max_workgroup_storage_size = 1000000000 }"},
               says="needs max_workgroup_storage_size >= 1000000000"),
    Unrunnable("dispatch-zero-at-run-time", {"dispatch": "M - 1"}, says="dispatch (0,) is outside"),
    Unrunnable("dispatch-negative-at-run-time", {"dispatch": "N - 100"}, says="dispatch (-84,) is outside"),
    Unrunnable("dispatch-over-the-adapter-limit", {"dispatch": "max_workgroups_per_dimension + 1"},
               says="is outside 1.."),
    Unrunnable("dispatch-divides-by-zero-at-run-time", {"dispatch": "N / (M - 1)"}, says="ZeroDivisionError"),
    Unrunnable("check-dispatch-zero", check_dispatch="M - 1", says="dispatch (0,) is outside"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("case", UNRUNNABLE, ids=[u.id for u in UNRUNNABLE])
def test_a_required_config_with_no_executed_case_fails(tmp_path: Path, swiftshader_icd: dict[str, str],
                                                       case: Unrunnable) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml", configs="b", **case.matrix)  # type: ignore[arg-type]
    fixtures = write_fixtures(tmp_path / "fixtures", matrix, "b")
    results = tmp_path / "results"
    common = ["--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(fixtures), "--results",
              str(results)]
    if case.check_dispatch:
        done = run_cli("check", "--kernel", GOOD_KERNEL, "--dispatch", case.check_dispatch, *common,
                       env=swiftshader_icd, timeout=300)
    else:
        done = run_cli("run", *common, env=swiftshader_icd, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    rows = results_of(results)["b"]
    assert not any(r["status"] == "pass" for r in rows)
    failures = [r for r in rows if r["status"] == "fail"]
    assert failures and any(case.says in r["message"] for r in failures), rows
    if not case.check_dispatch:
        assert any(r["message"].startswith("required config 'b' ran no case on 'swiftshader'") for r in failures)
    strict = run_cli("report", str(results), "--out", str(tmp_path / "report"), "--strict", "--quiet",
                     "--no-step-summary", timeout=300)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert run_cli("report", str(results), "--out", str(tmp_path / "report"), "--quiet",
                   "--no-step-summary", timeout=300).returncode == 0  # without --strict a report is not a verdict


STRICT = [  # (id, results, run's meta, does report --strict pass?)
    ("all-passed", [fake_result("b", "pass"), fake_result("h", "skip", "heavy")], {}, True),
    ("one-failed", [fake_result("b", "pass"), fake_result("a", "fail")], {}, False),
    ("nothing-ran", [fake_result("h", "skip", "heavy"), fake_result("o", "unsupported", "optional")], {}, False),
    ("required-only-unsupported", [fake_result("b", "pass"), fake_result("a", "unsupported")], {}, False),
    ("required-only-unsupported-on-one-backend",
     [fake_result("b", "pass"), fake_result("b", "unsupported", backend="lavapipe")], {}, False),
    ("required-skipped-by-tier-on-another-backend",  # a heavy-only job there: run does not fail it either
     [fake_result("b", "pass"), fake_result("h", "pass", "heavy", "lavapipe"),
      fake_result("b", "skip", backend="lavapipe")], {},
     True),
    ("interrupted", [fake_result("b", "pass")], {"interrupted": True}, False),
    ("empty", [], {}, False),
]


@pytest.mark.parametrize("results, meta, passes", [s[1:] for s in STRICT], ids=[s[0] for s in STRICT])
def test_report_strict_agrees_with_run(tmp_path: Path, results: list[Result], meta: dict, passes: bool) -> None:
    from q4gsw.commands import report

    write_results(tmp_path / "in" / "results.json", results, meta)
    code = report.main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--strict", "--quiet",
                            "--no-step-summary"])
    assert code == (0 if passes else 1)
