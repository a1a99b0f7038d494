"""The verdict (q4gsw.verdict): the exit codes and the rules that fail a run, defined once."""

from __future__ import annotations

from q4gsw import verdict
from q4gsw.result import Result


def result(config: str, status: str, backend: str = "lavapipe") -> Result:
    return Result(config=config, backend=backend, status=status, message="")


def test_the_exit_codes_are_the_documented_ones():
    assert (verdict.OK, verdict.FAILED, verdict.USAGE, verdict.INTERRUPTED) == (0, 1, 2, 130)


def test_problems_say_why_results_fail_a_run():
    assert verdict.problems([result("a", "pass"), result("b", "skip")]) == []
    assert verdict.problems([result("a", "pass"), result("a", "fail")]) == ["1 failed"]
    assert verdict.problems([result("a", "skip")]) == ["no case passed: nothing was checked"]
    assert verdict.exit_code([result("a", "skip")]) == verdict.FAILED
    assert verdict.exit_code([result("a", "pass")], interrupted=True) == verdict.INTERRUPTED


def test_a_required_config_that_ran_nothing_on_its_backend_is_named():
    results = [result("a", "fail"), result("b", "unsupported"), result("c", "pass", backend="swiftshader"),
               result("c", "unsupported")]
    required = [("a", "lavapipe"), ("b", "lavapipe"), ("c", "lavapipe"), ("b", "lavapipe")]
    assert verdict.required_not_run(results, required) == [("b", "lavapipe"), ("c", "lavapipe")]
