"""Progress on long work (q4gsw.run.progress): the estimate, its honesty without a rate, and when lines appear."""

from __future__ import annotations

import io

import pytest

from q4gsw.report.result import Result, Timings
from q4gsw.run import progress
from q4gsw.run.progress import BackendRate, Heartbeat, Work, dispatches_per_case, progress_text


def test_the_estimate_comes_from_the_flops_and_the_backends_rate():
    # 130 GFLOP at 1.3 GFLOP/s take ~100 s: 60 s in, ~40 s are left.
    assert progress_text("q_proj_4k / cpu_tiled", 60, 130e9, 1.3) == \
        "still running q_proj_4k / cpu_tiled: 60 s elapsed, ~40 s left at 1.3 GFLOP/s"


def test_without_a_rate_there_is_no_estimate_and_it_says_so():
    text = progress_text("a / k", 31, 1e9, None)
    assert text == "still running a / k: 31 s elapsed, no estimate yet (no kernel has finished on this backend in " \
                   "this run)"


def test_past_the_estimate_it_says_so_instead_of_a_negative_time():
    assert progress_text("a / k", 90, 13e9, 1.3) == \
        "still running a / k: 90 s elapsed, past the ~10 s its kernels take at 1.3 GFLOP/s"


def test_the_rate_is_total_flops_over_total_kernel_seconds():
    rate = BackendRate()
    assert rate.gflops is None
    rate.add(Result(config="a", backend="b", status="pass", message="", timings=Timings(gpu_s=1.0, gflops=1.0)))
    rate.add(Result(config="a", backend="b", status="pass", message="", timings=Timings(gpu_s=3.0, gflops=3.0)))
    rate.add(Result(config="a", backend="b", status="fail", message="crash"))  # no timing: not counted
    assert rate.gflops == pytest.approx((1e9 * 1 + 3e9 * 3) / 4 / 1e9)


def test_a_case_dispatches_once_or_repeats_plus_one_times():
    assert [dispatches_per_case(r) for r in (0, 1, 2, 5)] == [1, 1, 3, 6]


def test_logs_get_one_heartbeat_line_every_30_seconds():
    out = io.StringIO()  # not a terminal
    beat = Heartbeat(Work("a / k", 10e9), rate_gflops=None, stream=out)
    for elapsed in (0.0, 29.9, 30.0, 30.05, 59.0, 60.0, 61.0):
        beat(elapsed)
    beat.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "30 s elapsed" in lines[0] and "60 s elapsed" in lines[1]
    assert all("\r" not in line for line in lines)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_line_that_is_cleared_at_the_end():
    out = Terminal()
    beat = Heartbeat(Work("a / k", 10e9), rate_gflops=1.0, stream=out)
    beat(1.0)  # too soon: a quick config never shows it
    assert out.getvalue() == ""
    beat(progress.LIVE_AFTER_S)
    beat(progress.LIVE_AFTER_S + 0.1)  # refreshed at most once a second
    beat(progress.LIVE_AFTER_S + 1.0)
    beat.close()
    shown = out.getvalue()
    assert shown.count("still running a / k") == 2 and "left at 1 GFLOP/s" in shown
    assert shown.endswith("\r\033[K") and "\n" not in shown
