"""`run --in-process` (q4gsw.run.inprocess) keeps what ran (issue 29): a case that raises fails the rest of its config
with the exception and the run goes on to the next config; Ctrl-C keeps the cases already judged. Offline: the
engine's execute_config is stood in for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import write_matrix

from q4gsw.case import base_result
from q4gsw.cases import Case, build_selection
from q4gsw.matrix.load import load_matrix
from q4gsw.report.result import Result
from q4gsw.run import inprocess
from q4gsw.run.exporter import FixtureSource
from q4gsw.run.options import RunOptions


def run_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raises: BaseException) -> list[Result]:
    """Configs b and c (two inputs each): b's first case passes, its second raises; c passes."""
    matrix = load_matrix(write_matrix(tmp_path / "matrix.toml", "bc",
                                      replace=(('name = "b"', 'name = "b"\ninputs = ["ramp", "normal"]'),)))
    selection = build_selection(matrix, "swiftshader", names=("b", "c"))

    def execute_config(cases: list[Case], *args: object, **kwargs: object) -> Iterator[Result]:
        for case in cases:
            if case.config.name == "b" and case.input == "normal":
                raise raises
            yield base_result(case, "pass", "ok")

    monkeypatch.setattr(inprocess, "execute_config", execute_config)
    recorded: list[Result] = []
    options = RunOptions(fixtures=FixtureSource(None, tmp_path / "cache", matrix.path), in_process=True)

    def run() -> None:
        inprocess.execute_in_process(selection, list(selection.configs), lambda c: (tmp_path, "", 0.0), options,
                                     matrix.root, recorded.append)

    if isinstance(raises, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):  # it still stops the run (finish writes the partial results)
            run()
    else:
        run()
    return recorded


def test_a_case_that_raises_fails_the_rest_of_its_config_and_the_run_goes_on(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = run_in_process(tmp_path, monkeypatch, RuntimeError("driver said no"))
    statuses = {r.case_id: (r.status, r.message) for r in recorded}
    assert statuses["b/good/ramp@swiftshader"] == ("pass", "ok")  # it ran before the raise: kept
    status, message = statuses["b/good/normal@swiftshader"]
    assert status == "fail" and message.startswith("RuntimeError: driver said no")
    assert statuses["c/good/ramp@swiftshader"] == ("pass", "ok")  # the next config still ran


def test_ctrl_c_keeps_the_cases_already_judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = run_in_process(tmp_path, monkeypatch, KeyboardInterrupt())
    statuses = {r.case_id: (r.status, r.message) for r in recorded}
    assert statuses == {"b/good/ramp@swiftshader": ("pass", "ok"),
                        "b/good/normal@swiftshader": ("skip", "not run: the run was interrupted")}
