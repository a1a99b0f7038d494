"""The child-process protocol (q4gsw.run.procs): offline, with plain `sleep`/`sh` children, no GPU; and, on
SwiftShader (e2e, issue 14), no q4gsw process outlives its run: a parent SIGKILLed during a hung kernel or an
export, a child at its own deadline, a child whose parent died before it started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import REPO
from helpers import write_fixtures, write_matrix

from q4gsw.matrix.load import load_matrix
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


# ------------------------------------------------------------------------------------------------
# Orphans (issue 14): no q4gsw process outlives its run, on SwiftShader
# ------------------------------------------------------------------------------------------------

def _descendants_named(pid: int, command: str) -> list[psutil.Process]:
    """The run's `python -m q4gsw COMMAND ...` descendants (COMMAND as an argument, not part of a path), or all of
    its q4gsw children (_child, _export, _probe, _warm, ...) for command="*"."""

    def matches(argv: list[str]) -> bool:
        at = argv.index("q4gsw") + 1 if "q4gsw" in argv[:-1] else -1
        return at > 0 and (argv[at] == command or (command == "*" and argv[at].startswith("_")))

    def argv(process: psutil.Process) -> list[str]:
        try:
            return process.cmdline()
        except psutil.Error:  # gone between listing and asking (the probe, a finished _warm): not a match
            return []

    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if matches(argv(p))]
    except psutil.Error:  # the run itself is gone
        return []


def _gone(procs: list[psutil.Process], within_s: float) -> list[psutil.Process]:
    """Those of procs still running (not zombies) after within_s."""
    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _kill_parent_during(tmp_path: Path, icd: dict[str, str], stage: str, busy_s: float) -> None:
    """Start a run, wait until its `stage` child (_child hung in its kernel, or _export importing torch) has been busy
    for busy_s, SIGKILL only the run's own process, and check that the child dies with it, well before its
    timeout_s. In the `_child` stage, the warm children of configs b and c (started while a runs, waiting for
    their fixtures) must die too."""
    timeout_s = 60
    configs = "abc" if stage == "_child" else "a"
    matrix = write_matrix(tmp_path / "matrix.toml", configs=configs, kernel="tests/data/hang.wgsl",
                          timeout_s=timeout_s)
    argv = [sys.executable, "-m", "q4gsw", "run", "--matrix", str(matrix), "--backend", "swiftshader", "--results",
            str(tmp_path / "r"), "--cache", str(tmp_path / "cache")]
    if stage == "_child":
        argv += ["--fixtures", str(write_fixtures(tmp_path / "fixtures", matrix, configs))]
    proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **icd}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not children and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            children = _descendants_named(proc.pid, stage)
        assert children, f"the run never started its {stage} process"
        time.sleep(busy_s)
        named = _descendants_named(proc.pid, stage)
        assert len(named) == len(configs), [c.cmdline() for c in named]  # _child: a (hung), b and c (warm)
        children = _descendants_named(proc.pid, "*")  # all of the run's children, whatever their stage
        assert proc.poll() is None and _gone(children, 0), f"{stage} finished before the test killed its run"
        started = time.monotonic()
        proc.kill()  # SIGKILL to the parent only: its children are in their own sessions and get no signal from it
        proc.wait()
        alive = _gone(children, timeout_s)
        assert alive == [], f"orphans left running: {alive}"
        assert time.monotonic() - started < timeout_s / 2  # they died with the parent, not at their own deadline
    finally:
        for p in children:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if proc.poll() is None:
            proc.kill()


def _child_job(tmp_path: Path, deadline_s: float) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a `_child` whose kernel hangs (config a, M=3), as the engine starts it."""
    from q4gsw.cases import build_selection, to_plain
    from q4gsw.run.procs import child_env
    from q4gsw.webgpu.provision import provision

    matrix = write_matrix(tmp_path / "matrix.toml", configs="a", kernel="tests/data/hang.wgsl")
    loaded = load_matrix(matrix)
    selection = build_selection(loaded, "swiftshader")
    fixture = write_fixtures(tmp_path / "fixtures", matrix, "a") / "a"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"cases": [to_plain(c) for c in selection.cases], "fixture": str(fixture),
                               "seed": None, "out": str(tmp_path / "out.json"), "repeats": 1,
                               "deadline_s": deadline_s, "root": str(REPO)}))
    env = child_env(provision(loaded.backend("swiftshader")))
    return [sys.executable, "-m", "q4gsw", "_child", str(job)], env


def _own_deadline(tmp_path: Path, icd: dict[str, str]) -> None:
    """A `_child` whose parent (this test) never kills it stops itself at its deadline, even inside the driver."""
    command, env = _child_job(tmp_path, deadline_s=4)
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert proc.wait(timeout=60) == -signal.SIGALRM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 4 <= time.monotonic() - started < 60


def _parent_gone_before_start(tmp_path: Path, icd: dict[str, str]) -> None:
    """The parent dies while the child's interpreter is still starting (before PR_SET_PDEATHSIG): the child sees
    that its parent is no longer the run and exits at once, instead of running a hung kernel to its deadline."""
    command, env = _child_job(tmp_path, deadline_s=120)
    starter = (f"import json, subprocess, sys; from q4gsw.run.procs import child_env; "
               f"p = subprocess.Popen({command!r}, env=child_env(json.loads(sys.argv[1])), start_new_session=True, "
               f"stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    done = subprocess.run([sys.executable, "-c", starter, json.dumps(env)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    try:
        orphan = psutil.Process(int(done.stdout.strip()))
    except psutil.NoSuchProcess:
        return  # already gone
    try:
        assert _gone([orphan], 30) == [], "the orphan kept running"
    finally:
        with contextlib.suppress(psutil.Error):
            orphan.kill()


ORPHANS: list[tuple[str, Callable[[Path, dict[str, str]], object]]] = [
    ("parent-sigkilled-during-a-hung-kernel", lambda t, e: _kill_parent_during(t, e, "_child", busy_s=5)),
    ("parent-sigkilled-during-an-export", lambda t, e: _kill_parent_during(t, e, "_export", busy_s=1.5)),
    ("child-stops-at-its-own-deadline", _own_deadline),
    ("parent-gone-before-the-child-started", _parent_gone_before_start),
]


@pytest.mark.e2e
@pytest.mark.parametrize("scenario", [o[1] for o in ORPHANS], ids=[o[0] for o in ORPHANS])
def test_no_q4gsw_process_outlives_its_run(tmp_path: Path, swiftshader_icd: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           scenario: Callable[[Path, dict[str, str]], object]) -> None:
    for key, value in swiftshader_icd.items():  # provision() in this process finds the ICD too
        monkeypatch.setenv(key, value)
    scenario(tmp_path, swiftshader_icd)
