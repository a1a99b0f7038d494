"""A reproduce line, pasted, reruns the same case (issue #22): the run's matrix, fixtures folder and ExecuTorch
checkout are repeated, not only the backend and config. The oracle is the command line itself: the line is
parsed back by q4gsw's own parser and must name the same matrix, fixtures, checkout, backend and config.
Offline: selections are built and their reproduce lines read; nothing runs.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import write_matrix

from q4gsw import cli
from q4gsw.case import reproduce_for
from q4gsw.cases import Skip, case_from_plain, to_plain
from q4gsw.matrix.load import load_matrix
from q4gsw.run.records import config_failure, skip_result
from q4gsw.sessions import reproduce_command, rerun_options


def parsed(line: str):
    """The reproduce line as q4gsw's parser reads it (only `python -m q4gsw ...` lines can carry the options)."""
    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "q4gsw"], line
    return cli.build_parser().parse_args(words[3:])


def selection_of(argv: list[str], kernels=None):
    args = cli.build_parser().parse_args(argv)
    return cli.selection_from_args(load_matrix(args.matrix), args, kernels), args


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    return write_matrix(tmp_path / "my matrix.toml", configs="bh")


def test_a_run_with_its_own_matrix_and_fixtures_is_reproduced_with_them(tmp_path, matrix):
    fixtures = tmp_path / "fixtures"
    selection, _ = selection_of(["run", "--matrix", str(matrix), "--backend", "swiftshader", "--config", "b",
                                 "--fixtures", str(fixtures)])
    (case,) = selection.cases
    for line in (reproduce_for(case), reproduce_for(case_from_plain(to_plain(case))),  # as the child writes it
                 config_failure(case.config, selection, "export failed", selection.cases).reproduce,
                 skip_result(Skip(case.config, "why"), selection).reproduce):
        args = parsed(line)
        assert (args.command, Path(args.matrix), args.fixtures, args.backend, args.config) == \
            ("run", matrix.resolve(), fixtures.resolve(), "swiftshader", ["b"]), line


def test_a_check_is_reproduced_with_its_matrix(tmp_path, matrix):
    kernel = Path(__file__).parent / "data" / "good.wgsl"
    argv = ["check", "--matrix", str(matrix), "--kernel", str(kernel), "--dispatch", "ceil(M * N / 64)",
            "--backend", "swiftshader", "--config", "b"]
    args = cli.build_parser().parse_args(argv)
    selection = cli.selection_from_args(load_matrix(matrix), args, (cli._user_kernel(args),), applies=False)
    args = parsed(reproduce_for(selection.cases[0]))
    assert (args.command, Path(args.matrix), args.kernel, args.backend, args.config) == \
        ("check", matrix.resolve(), kernel.resolve(), "swiftshader", ["b"])


def test_an_executorch_case_is_reproduced_with_its_checkout_matrix_and_fixtures(tmp_path, matrix):
    checkout, fixtures = tmp_path / "executorch", tmp_path / "fixtures"
    selection, _ = selection_of(["run", "--matrix", str(matrix), "--backend", "swiftshader", "--config", "b",
                                 "--executorch", str(checkout), "--fixtures", str(fixtures)])
    (case,) = selection.cases
    case = replace(case, kernel=replace(case.kernel, origin=f"executorch:{checkout.resolve()}:k.wgsl"))
    line = reproduce_for(case)
    assert shlex.split(line).count("--executorch") == 1, line
    args = parsed(line)
    assert (args.executorch, Path(args.matrix), args.fixtures, args.backend, args.config) == \
        (checkout.resolve(), matrix.resolve(), fixtures.resolve(), "swiftshader", ["b"])
    # A row written before any case ran (a kernel missing from the tree) names the checkout too.
    args = parsed(skip_result(Skip(case.config, "missing", kernel="k", status="fail"), selection).reproduce)
    assert args.executorch == checkout.resolve() and args.fixtures == fixtures.resolve()


def test_the_default_run_keeps_its_nox_session_line():
    """matrix.toml of the current folder, fixtures exported into the cache: the session reruns it as before."""
    assert rerun_options("matrix.toml", None, None) == ()
    assert reproduce_command("q_proj", "swiftshader", "required", "llama", rerun=()) == \
        "nox -s accuracy-swiftshader -- --config q_proj"
