"""A run's verdict, decided once for every command: the exit codes, and the rules that make a run fail.

- any case failed, or none passed (a run that checked nothing is never a success): FAILED
- a required config selected on a backend none of whose cases ran there (pass or fail): FAILED; the run records
  it as a failed config (stages), `report --strict` finds it in merged results
- with --fail-on-drift, a comparison with the --baseline run that fails the gate (q4gsw.drift.rule: a case that
  drifted or stopped passing, a measured case missing now, nothing compared) or with the baseline bench
  (q4gsw.drift.bench): FAILED; without the flag all this is reported and the code is unchanged
- interrupted (Ctrl-C, SIGTERM; partial results written): INTERRUPTED
- usage, matrix.toml or environment errors, nothing run: USAGE
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from q4gsw.report.result import Result

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
EXECUTED = ("pass", "fail")  # the statuses of a case that ran


def problems(results: list[Result]) -> list[str]:
    """Why these results fail a run ([] when they pass it)."""
    failed = sum(1 for r in results if r.status == "fail")
    found = [f"{failed} failed"] if failed else []
    if not any(r.status == "pass" for r in results):
        found.append("no case passed: nothing was checked")
    return found


def exit_code(results: list[Result], interrupted: bool = False) -> int:
    """The one place a run's exit code is decided: nothing checked is never a success."""
    if interrupted:
        return INTERRUPTED
    return FAILED if problems(results) else OK


def with_drift(code: int, gate_failures: int, fail_on_drift: bool) -> int:
    """The exit code once the comparison with a baseline is known: FAILED when it fails the gate under
    --fail-on-drift, never hiding a code that says more (interrupted, usage)."""
    return FAILED if code == OK and gate_failures and fail_on_drift else code


def required_not_run(results: list[Result], required: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (config, backend) pairs of `required` (required configs selected on a backend) none of whose cases
    ran there: each fails the run."""
    ran = {(r.config, r.backend) for r in results if r.status in EXECUTED}
    return [pair for pair in dict.fromkeys(required) if pair not in ran]
