"""Hostile command lines (issue 29, "one line, never a traceback"): each mistake a user can make on the command
line is answered with one `error:` line naming the option and the fix, exit code 2, before any work."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import REPO, cli_in_process, run_cli

from q4gsw.matrix.load import load_matrix


def one_usage_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a refused command (exit 2, no traceback, nothing else on stderr)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_mutants_refuses_an_unknown_op_in_one_line():
    line = one_usage_line(cli_in_process("mutants", "--op", "nope"))
    assert "--op" in line and "unknown op 'nope'" in line and "linear_q4gsw" in line


def test_mutants_suggests_the_op_meant():
    line = one_usage_line(cli_in_process("mutants", "--op", "linear_q4gsx", "--list"))
    assert "did you mean 'linear_q4gsw'?" in line


def test_mutants_checks_fixtures_and_max_gflop_before_any_work(tmp_path):
    """Hostile pass: a --fixtures folder that does not exist failed every config in its child (exit 1, a
    mutants.json written); --max-gflop nan or -1 was said as 'selects no config'. Both are usage errors, as in run."""
    line = one_usage_line(cli_in_process("mutants", "--fixtures", str(tmp_path / "nope"), "--config", "kv_proj",
                                         "--results", str(tmp_path / "out")))
    assert line == (f"error: command line: mutants: key '--fixtures': {tmp_path / 'nope'} is not a folder — pass a "
                    "folder written by `python -m q4gsw export --out DIR`")
    for value in ("nan", "-1", "0"):
        line = one_usage_line(cli_in_process("mutants", "--max-gflop", value, "--results", str(tmp_path / "out")))
        assert f"key '--max-gflop': {float(value):g} is not a GFLOP count — pass a number > 0" in line
    assert not (tmp_path / "out").exists()


def test_an_op_that_rules_out_the_named_config_is_said(tmp_path):
    """Hostile pass: `run --op linear_q4gsw --config dq8ca_kv_proj` said "key '--config': selects no config" of a
    config that exists; the --op that rules it out is named, with the config's own op."""
    for command in (["run", "--backend", "swiftshader"], ["export"]):
        line = one_usage_line(cli_in_process(*command, "--op", "linear_q4gsw", "--config", "dq8ca_kv_proj",
                                             "--results" if command[0] == "run" else "--out", str(tmp_path / "out")))
        assert line == (f"error: command line: {command[0]}: key '--config/--op': selects no config of the matrix "
                        "(config 'dq8ca_kv_proj' is of op linear_dq8ca_q4gsw) — see `python -m q4gsw list` for the "
                        "configs, suites, tiers and ops")
    line = one_usage_line(cli_in_process("run", "--backend", "swiftshader", "--op", "linear_q4gsw", "--suite",
                                         "dq8ca-edges", "--results", str(tmp_path / "out")))
    assert "key '--suite/--tier/--op': selects no config of the matrix" in line
    assert not (tmp_path / "out").exists()


def test_export_does_not_take_options_it_would_ignore(tmp_path):
    """Hostile pass: `export --results DIR` (or --fixtures DIR) was accepted and ignored: the fixtures went to the
    cache, nothing to DIR. export writes into --out or the cache; those options are refused, as any unknown one."""
    for option in ("--results", "--fixtures"):
        done = cli_in_process("export", "--config", "kv_proj", option, str(tmp_path / "out"),
                              env={"Q4GSW_CACHE": str(tmp_path / "cache")})
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert f"error: unrecognized arguments: {option} {tmp_path / 'out'}" in done.stderr
        assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
    assert "--results" not in cli_in_process("export", "--help").stdout


def test_check_says_a_kernel_folder_is_a_folder(tmp_path):
    """Hostile pass: `check --kernel DIR` said 'no such file' of a folder that exists."""
    line = one_usage_line(cli_in_process("check", "--backend", "swiftshader", "--kernel", str(tmp_path), "--dispatch",
                                         "1", "--results", str(tmp_path / "results")))
    assert line == (f"error: command line: check: key '--kernel': {tmp_path}: is a folder, not a file — pass the "
                    "path of a .wgsl file (UTF-8 text)")


def test_a_kernel_file_that_is_not_utf8_is_refused_before_any_work(tmp_path):
    """Hostile pass: such a file passed `validate` and `check`, then crashed the run's child, whose traceback was
    the FAIL message. The loader and `check --kernel` read it first."""
    from test_matrix_errors import BASE

    kernel = tmp_path / "latin1.wgsl"
    kernel.write_bytes("// \u00e9t\u00e9\n@compute @workgroup_size(1) fn main() {}\n".encode("latin-1"))
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(BASE.replace(f"{REPO}/q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl", str(kernel)))
    for argv in (["validate"], ["run", "--backend", "swiftshader", "--results", str(tmp_path / "out")]):
        line = one_usage_line(cli_in_process(*argv, "--matrix", str(matrix)))
        assert line.startswith(f"error: {matrix}: [kernel.gemv]: key 'file': '{kernel}' cannot be read as UTF-8 "
                               "text (UnicodeDecodeError: "), line
        assert line.endswith("— save the WGSL file as UTF-8")
    line = one_usage_line(cli_in_process("check", "--backend", "swiftshader", "--kernel", str(kernel), "--dispatch",
                                         "1", "--results", str(tmp_path / "out")))
    assert line.startswith(f"error: command line: check: key '--kernel': {kernel}: cannot be read as UTF-8 text")
    assert not (tmp_path / "out").exists()


def test_validate_refuses_a_kernel_file_found_only_from_the_working_directory(tmp_path):
    """The run reads a kernel file relative to matrix.toml; one that resolves only from the working directory
    validated and then failed every case of the kernel. Refused, with the path to write instead."""
    from test_matrix_errors import BASE

    relative = "q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl"
    assert (REPO / relative).is_file() and not (tmp_path / relative).exists()
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(BASE.replace(f"{REPO}/{relative}", relative))
    line = one_usage_line(run_cli("validate", "--matrix", str(matrix), cwd=REPO))
    expected = os.path.relpath(REPO / relative, tmp_path.resolve())
    assert line.startswith(f"error: {matrix}: [kernel.gemv]: key 'file': '{relative}' is found from the working "
                           "directory, not from matrix.toml's folder"), line
    assert line.endswith(f'write file = "{expected}"'), line
    matrix.write_text(BASE.replace(f"{REPO}/{relative}", expected))  # the fix it gives is one the loader takes
    assert load_matrix(matrix).kernels[0].path(matrix.parent).resolve() == (REPO / relative).resolve()


def test_report_refuses_a_json_file_that_is_no_results_json_and_writes_nothing_beside_it(tmp_path):
    """`report results/bench.json` re-rendered the bench JSON as an empty run, in place: the summary.md and
    junit.xml beside it (a plain run's, or the user's) were replaced by a report of nothing, exit 0."""
    (tmp_path / "bench.json").write_text(json.dumps({"bench_format": 2, "backend": "swiftshader", "rows": []}))
    (tmp_path / "summary.md").write_text("the user's own notes\n")
    line = one_usage_line(cli_in_process("report", str(tmp_path / "bench.json")))
    assert line == (f"error: {tmp_path / 'bench.json'}: is a bench JSON (from `q4gsw bench`), not a results.json — "
                    "pass a results folder or results.json written by `q4gsw run`")
    for name, text, says in (("other.json", {"tool": "x"}, "is not a q4gsw results.json (no 'results' list)"),
                             ("list.json", [], "is not a q4gsw results.json (no 'results' list)"),
                             ("ints.json", {"results": [1]}, "(results[0] is a int, not an object)")):
        (tmp_path / name).write_text(json.dumps(text))
        assert says in one_usage_line(cli_in_process("report", str(tmp_path / name)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "ints.json", "list.json", "other.json",
                                                          "summary.md"]
    assert (tmp_path / "summary.md").read_text() == "the user's own notes\n"


def test_run_executorch_refuses_a_folder_with_none_of_the_op_folders(tmp_path):
    """Hostile pass: `run --executorch` on an empty folder (a typo, the wrong folder) noted four ops as 'an older
    ExecuTorch', provisioned the backend and ran nothing (exit 1). It is no checkout: said in one line, exit 2."""
    tree = tmp_path / "not-a-checkout"
    tree.mkdir()
    line = one_usage_line(cli_in_process("run", "--backend", "swiftshader", "--executorch", str(tree),
                                         "--results", str(tmp_path / "results")))
    assert line.startswith(f"error: command line: run: key '--executorch': {tree} has none of the kernel sets' "
                           "folders (backends/webgpu/runtime/ops/"), line
    assert line.endswith("— pass the path of an ExecuTorch checkout")
    assert not (tmp_path / "results").exists()


def test_ctrl_c_in_bench_mutants_report_or_audit_is_one_line_and_exit_130(monkeypatch, capsys):
    """Hostile pass: Ctrl-C in bench or mutants printed a KeyboardInterrupt traceback from wherever the command was
    waiting (a selector poll). `run` already says it in one line; every command does now."""
    import importlib

    from q4gsw import cli

    def interrupted(argv):
        raise KeyboardInterrupt

    for command, module in cli.EXTERNAL_COMMANDS.items():
        monkeypatch.setattr(importlib.import_module(module), "main", interrupted)
        try:
            code = cli.main([command])
        except KeyboardInterrupt:
            pytest.fail(f"{command}: Ctrl-C escaped as a KeyboardInterrupt traceback")
        assert code == 130
        err = capsys.readouterr().err
        assert err.strip() == f"interrupted: {command} stopped; what it writes at its end was not written"
