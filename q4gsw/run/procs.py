"""The child-process protocol: start a child in its own session, wait for it with a deadline, kill it, say why
it ended. A child dies with its parent (PR_SET_PDEATHSIG) and ends itself at its own deadline (SIGALRM), so no
GPU work outlives the run even when the parent is killed."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from q4gsw.console import CLOCK_ENV
from q4gsw.console import last_lines as _last_lines

PARENT_ENV = "Q4GSW_PARENT_PID"  # the run's pid: a child whose parent is no longer it exits at once
VERBOSE_ENV = "Q4GSW_VERBOSE"
PREWARM_ENV = "Q4GSW_PREWARM"  # the cold-start switch, parsed by prewarm.parse_switch
POLL_S = 0.05


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int
    timed_out: bool
    duration_s: float
    peak_rss_bytes: int
    log: str  # the child's stderr: library noise, kept for a failing config


@dataclass(frozen=True)
class ChildPolicy:
    """How a run starts its GPU children (prewarm.Prewarm.policy decides; the default: no cold-start machinery)."""

    spares_ahead: int = 0  # configs whose children start while one runs; 0: each starts when its fixture is in


NO_PREWARM = ChildPolicy()


def die_with_parent(deadline_s: float) -> None:
    """SIGKILL when the parent dies (Linux), and SIGALRM's default action (terminate) at the deadline:
    both work while the process is blocked inside the driver, where Python handlers never run.

    PR_SET_PDEATHSIG fires when the thread that started this process exits; the run starts children
    from the thread that then waits for them, so it fires when the run dies. The parent may die before
    the prctl (during this interpreter's start-up): then the parent pid is no longer the one the run
    recorded (the orphan is re-parented to init or a subreaper, not always pid 1), and this exits."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    expected = os.environ.get(PARENT_ENV, "")
    if os.getppid() == 1 or (expected.isdigit() and os.getppid() != int(expected)):  # the parent is already gone
        os._exit(137)
    start_deadline(deadline_s)


def start_deadline(deadline_s: float) -> None:
    if deadline_s > 0:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(min(max(1, math.ceil(deadline_s)), 2**31 - 1))  # alarm() takes whole seconds, an unsigned int


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault(CLOCK_ENV, repr(time.time()))
    env[PARENT_ENV] = str(os.getpid())
    return env


def start_child(command: list[str], env: dict[str, str], err: Any, stdin: int | None = None) -> subprocess.Popen[bytes]:
    verbose = os.environ.get(VERBOSE_ENV) == "1"
    return subprocess.Popen(command, env=env, stdin=stdin, stdout=None, stderr=None if verbose else err,
                            start_new_session=True)


def wait_child(proc: subprocess.Popen[bytes], err: Any, timeout_s: float,
               on_tick: Callable[[float], None] = lambda elapsed_s: None) -> ChildOutcome:
    """Wait for a started child (stdout passed through, stderr into `err`), killed at timeout_s or on any error
    here (Ctrl-C included): no child, and no GPU work, outlives the wait. on_tick(seconds waited) is called at
    every poll (progress lines)."""
    started = time.perf_counter()
    timed_out = False
    rusage = None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            elapsed = time.perf_counter() - started
            if elapsed > timeout_s:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            on_tick(elapsed)
            time.sleep(POLL_S)
    except BaseException:
        kill_child(proc)
        raise
    err.seek(0)
    log = err.read()[-20000:].decode(errors="replace")
    peak = int(rusage.ru_maxrss) * 1024 if rusage is not None else 0
    return ChildOutcome(returncode=proc.returncode, timed_out=timed_out, duration_s=time.perf_counter() - started,
                        peak_rss_bytes=peak, log=log)


def kill_child(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a child started in its own session (its whole process group) and reap it."""
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def describe_exit(outcome: ChildOutcome, what: str, timeout_s: float) -> str:
    if outcome.timed_out:
        return f"{what} timed out after {timeout_s:g} s (timeout_s in matrix.toml) and was killed"
    if outcome.returncode == -signal.SIGALRM:
        return f"{what} reached its own deadline of {timeout_s:g} s (timeout_s in matrix.toml) and was stopped"
    if outcome.returncode < 0:
        name = signal.Signals(-outcome.returncode).name
        return f"{what} crashed with {name}: {_last_lines(outcome.log)}"
    return f"{what} failed (exit {outcome.returncode}): {_last_lines(outcome.log)}"
