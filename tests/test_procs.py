"""The child-process protocol (q4gsw.run.procs), offline: with plain `sleep`/`sh` children, no GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile

from q4gsw.run.procs import PARENT_ENV, ChildOutcome, child_env, describe_exit, start_child, wait_child


def test_a_child_knows_its_parent_and_the_runs_clock():
    env = child_env({"EXTRA": "1"})
    assert env[PARENT_ENV] == str(os.getpid()) and env["EXTRA"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_wait_child_kills_at_the_deadline_and_reports_each_tick():
    ticks: list[float] = []
    with tempfile.TemporaryFile() as err:
        proc = start_child(["sleep", "30"], child_env({}), err)
        outcome = wait_child(proc, err, timeout_s=0.5, on_tick=ticks.append)
    assert outcome.timed_out and outcome.returncode == -signal.SIGKILL
    assert 0.5 <= outcome.duration_s < 5
    assert ticks and ticks == sorted(ticks) and ticks[-1] <= 0.5  # elapsed seconds, rising, until the deadline
    assert proc.poll() is not None  # reaped: nothing outlives the wait


def test_wait_child_keeps_the_childs_stderr_as_its_log():
    with tempfile.TemporaryFile() as err:
        proc = start_child(["sh", "-c", "echo driver says no >&2; exit 3"], child_env({}), err,
                           stdin=subprocess.DEVNULL)
        outcome = wait_child(proc, err, timeout_s=30)
    assert (outcome.returncode, outcome.timed_out) == (3, False)
    assert "driver says no" in outcome.log
    assert describe_exit(outcome, "GPU run of 'a'", 30) == "GPU run of 'a' failed (exit 3): driver says no"


def test_describe_exit_names_the_deadline_and_the_signal():
    def outcome(returncode: int, timed_out: bool = False) -> ChildOutcome:
        return ChildOutcome(returncode=returncode, timed_out=timed_out, duration_s=1.0, peak_rss_bytes=0, log="boom")

    assert "timed out after 7 s" in describe_exit(outcome(-9, timed_out=True), "x", 7)
    assert "reached its own deadline of 7 s" in describe_exit(outcome(-signal.SIGALRM), "x", 7)
    assert describe_exit(outcome(-signal.SIGSEGV), "x", 7) == "x crashed with SIGSEGV: boom"
