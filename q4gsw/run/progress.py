"""Progress on long work: a kernel that runs for minutes otherwise shows nothing between its config's start line
and its verdict. While a config's child runs, the parent (which polls it anyway) shows how long it has run and,
from the config's FLOPs and the GFLOP/s this backend has shown so far in the run, about how long is left: as a
live line in a terminal, as a heartbeat line every HEARTBEAT_S in logs and CI. No rate known yet: it says so."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from q4gsw.console import stamped
from q4gsw.report.result import Result

HEARTBEAT_S = 30.0  # logs and CI: one line this often
LIVE_AFTER_S = 2.0  # terminal: a config done sooner never shows the live line
LIVE_EVERY_S = 1.0


class BackendRate:
    """The GFLOP/s this backend has shown so far in the run: total kernel FLOPs over total kernel seconds."""

    def __init__(self) -> None:
        self.flops = 0.0
        self.seconds = 0.0

    def add(self, result: Result) -> None:
        timings = result.timings
        if timings.gpu_s and timings.gflops:
            self.flops += timings.gflops * 1e9 * timings.gpu_s
            self.seconds += timings.gpu_s

    @property
    def gflops(self) -> float | None:
        return self.flops / self.seconds / 1e9 if self.seconds else None


def dispatches_per_case(repeats: int) -> int:
    """case.execute_case's dispatches: one, plus `repeats` timed ones when repeats > 1."""
    return 1 if repeats <= 1 else repeats + 1


def progress_text(what: str, elapsed_s: float, work_flops: float, rate_gflops: float | None) -> str:
    """`still running X: 60 s elapsed, ~40 s left at 1.3 GFLOP/s` (an estimate of the kernels' work only)."""
    head = f"still running {what}: {elapsed_s:.0f} s elapsed"
    if not rate_gflops or work_flops <= 0:
        return f"{head}, no estimate yet (no kernel has finished on this backend in this run)"
    expected_s = work_flops / (rate_gflops * 1e9)
    if expected_s > elapsed_s:
        return f"{head}, ~{expected_s - elapsed_s:.0f} s left at {rate_gflops:.3g} GFLOP/s"
    return f"{head}, past the ~{expected_s:.0f} s its kernels take at {rate_gflops:.3g} GFLOP/s"


@dataclass(frozen=True)
class Work:
    what: str  # "q_proj_4k / cpu_tiled"
    flops: float  # every dispatch of every case


class Heartbeat:
    """Called with the seconds a child has run (procs.wait_child's on_tick); writes the progress lines."""

    def __init__(self, work: Work, rate_gflops: float | None, stream: TextIO | None = None) -> None:
        self.work, self.rate = work, rate_gflops
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.next_s = LIVE_AFTER_S if self.live else HEARTBEAT_S
        self.shown = False

    def __call__(self, elapsed_s: float) -> None:
        if elapsed_s < self.next_s:
            return
        text = progress_text(self.work.what, elapsed_s, self.work.flops, self.rate)
        if self.live:
            # Cursor back to the line's start: a child's own line then overwrites it instead of trailing it.
            self.stream.write(f"\r\033[K{stamped(text, '    ')}\r")
            self.next_s = elapsed_s + LIVE_EVERY_S
        else:
            self.stream.write(stamped(text, "    ") + "\n")
            self.next_s += HEARTBEAT_S
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.live and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
