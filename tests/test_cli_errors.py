"""Hostile command lines (issue 29, "one line, never a traceback"): each mistake a user can make on the command
line is answered with one `error:` line naming the option and the fix, exit code 2, before any work."""

from __future__ import annotations

import subprocess

from conftest import run_cli


def one_usage_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a refused command (exit 2, no traceback, nothing else on stderr)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_mutants_refuses_an_unknown_op_in_one_line():
    line = one_usage_line(run_cli("mutants", "--op", "nope"))
    assert "--op" in line and "unknown op 'nope'" in line and "linear_q4gsw" in line


def test_mutants_suggests_the_op_meant():
    line = one_usage_line(run_cli("mutants", "--op", "linear_q4gsx", "--list"))
    assert "did you mean 'linear_q4gsw'?" in line
