"""`bench --baseline OLD.json`: which kernels got slower than a baseline bench JSON, beyond the measured noise.

A bench row's time is the best of its repeats; the repeats also give its median and its spread (slowest - best
repeat). Per (shape, kernel, group size), a kernel is slower when

    new_best - old_best > old_spread + new_spread   and   new_best > (1 + min_slowdown) * old_best

(faster is the mirror image): the new time must clear both runs' own noise and a minimum relative margin
(MIN_SLOWDOWN, --min-slowdown), so that neither a noisy run nor a steady few-percent wobble is reported. A
baseline written before the spread was recorded (an older q4gsw) has none: only the margin applies, and one note
says so. The rule, and the run-to-run spread it was sized against, are in docs/results.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from q4gsw.report import verdict
from q4gsw.report.scoreboard import ScoreboardError, read_bench

BENCH_FORMAT = 2  # 2: rows carry median_s, spread_s and samples_s (a file without the key is format 1: best only)
MIN_SLOWDOWN = 0.10
KINDS = ("slower", "faster", "new", "vanished", "unmeasured", "same")  # the order they are listed in
FIX = "pass a bench JSON written by `python -m q4gsw bench --json PATH` (results.json files: `report --baseline`)"
STATS = ("median_s", "spread_s")


def repeat_stats(samples: Sequence[float]) -> dict[str, Any]:
    """median_s, spread_s and samples_s of a bench row from the seconds of each timed repeat (none: unknown)."""
    if not samples:
        return {}
    return {"median_s": statistics.median(samples), "spread_s": max(samples) - min(samples),
            "samples_s": list(samples)}


def read_baseline(path: Path, option: str = "--baseline") -> dict[str, Any]:
    """A bench JSON to compare with, checked (one line naming the file and the fix: ScoreboardError)."""
    run = read_bench(path, option, FIX)
    for index, row in enumerate(run["rows"]):
        for name in STATS:
            value = row.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ScoreboardError(f"{option} {path}: row {index}: '{name}' is a {type(value).__name__}: {FIX}")
    return run


@dataclass(frozen=True)
class TimeDelta:
    """One kernel on one shape in both bench runs."""

    shape: str
    kernel: str
    group_size: int
    kind: str  # one of KINDS
    old_s: float | None = None  # best times
    new_s: float | None = None
    old_spread_s: float = 0.0
    new_spread_s: float = 0.0

    @property
    def ratio(self) -> float | None:
        return self.new_s / self.old_s if self.old_s and self.new_s else None

    def reason(self) -> str:
        if self.old_s is None or self.new_s is None:
            return self.kind
        return (f"best {self.old_s * 1e3:.3f} -> {self.new_s * 1e3:.3f} ms ({self.ratio:.2f}x); spreads "
                f"{self.old_spread_s * 1e3:.3f} + {self.new_spread_s * 1e3:.3f} ms")


@dataclass(frozen=True)
class BenchComparison:
    baseline: str
    deltas: tuple[TimeDelta, ...]
    min_slowdown: float
    notes: tuple[str, ...]

    def of(self, kind: str) -> list[TimeDelta]:
        return [d for d in self.deltas if d.kind == kind]

    def line(self) -> str:
        counts = {kind: len(self.of(kind)) for kind in KINDS}
        compared = counts["slower"] + counts["faster"] + counts["same"]
        kernels = "kernel" if compared == 1 else "kernels"
        return (f"{counts['slower']} slower, {counts['faster']} faster, {counts['new']} new, {counts['vanished']} "
                f"vanished, {counts['unmeasured']} without a time ({compared} {kernels} compared with {self.baseline})")


def _key(row: dict[str, Any], run: dict[str, Any]) -> tuple[str, str, int]:
    return str(row["shape"]), str(row["kernel"]), int(row.get("group_size", run.get("group_size", 0)) or 0)


def _time(row: dict[str, Any]) -> float | None:
    value = row.get("time_s")
    return float(value) if isinstance(value, int | float) and value > 0 and math.isfinite(value) else None


def _spread(row: dict[str, Any]) -> float:
    value = row.get("spread_s")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def judge(old: float, new: float, old_spread: float, new_spread: float, min_slowdown: float) -> str:
    """slower, faster or same under the rule above."""
    noise = old_spread + new_spread
    if new - old > noise and new > (1 + min_slowdown) * old:
        return "slower"
    if old - new > noise and old > (1 + min_slowdown) * new:
        return "faster"
    return "same"


def diff_bench(old_run: dict[str, Any], new_run: dict[str, Any], *, label: str,
                  min_slowdown: float = MIN_SLOWDOWN) -> BenchComparison:
    """Match two bench JSONs' rows by (shape, kernel, group size) and judge each kernel present in both."""
    old = {_key(r, old_run): r for r in old_run["rows"]}
    new = {_key(r, new_run): r for r in new_run["rows"]}
    deltas = []
    for key, row in new.items():
        if key not in old:
            deltas.append(TimeDelta(*key, "new", new_s=_time(row)))
            continue
        before, after = _time(old[key]), _time(row)
        spreads = (_spread(old[key]), _spread(row))
        kind = "unmeasured" if before is None or after is None else judge(before, after, *spreads, min_slowdown)
        deltas.append(TimeDelta(*key, kind, before, after, *spreads))
    deltas += [TimeDelta(*key, "vanished", old_s=_time(row)) for key, row in old.items() if key not in new]
    notes = []
    if old and not any(any(r.get(s) is not None for s in STATS) for r in old.values()):
        notes.append(f"{label} records no spread over repeats (written by an older q4gsw): only the "
                     f"{min_slowdown:.0%} margin applies to it")
    where = [(run.get("backend"), run.get("webgpu"), (run.get("adapter") or {}).get("name")) for run in
             (old_run, new_run)]
    if where[0] != where[1]:
        notes.append(f"{label} was run on {where[0]}, this bench on {where[1]}: times from different adapters or "
                     "WebGPU implementations are not of the same machine")
    ordered = sorted(deltas, key=lambda d: KINDS.index(d.kind))
    return BenchComparison(label, tuple(ordered), min_slowdown, tuple(notes))


def markdown(comparison: BenchComparison) -> str:
    """The moved kernels as a Markdown table (the bench prints Markdown, like its scoreboard), then the verdict."""
    lines = []
    moved = [d for d in comparison.deltas if d.kind not in ("same",)]
    if moved:
        lines += ["| change | shape | kernel | gs | baseline ms | now ms | ratio | spreads ms (baseline + now) |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for d in moved:
            def ms(value: float | None) -> str:
                return f"{value * 1e3:.3f}" if value else "-"

            lines.append(f"| {d.kind.upper() if d.kind == 'slower' else d.kind} | {d.shape} | {d.kernel} | "
                         f"{d.group_size} | {ms(d.old_s)} | {ms(d.new_s)} | "
                         f"{f'{d.ratio:.2f}x' if d.ratio else '-'} | "
                         f"{ms(d.old_spread_s) if d.old_s else '-'} + {ms(d.new_spread_s) if d.new_s else '-'} |")
        lines.append("")
    lines.append(f"bench baseline: {comparison.line()}")
    lines.append(f"slower: new best - baseline best > both spreads and > {comparison.min_slowdown:.0%} of the "
                 "baseline best")
    return "\n".join(lines)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.1 for 10 %)") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a fraction >= 0, e.g. 0.1 for 10 %")
    return value


def add_bench_baseline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", type=Path, metavar="OLD.json",
                        help="compare the times with this bench JSON: kernels slower beyond both runs' spreads and "
                             "--min-slowdown are listed as drift")
    parser.add_argument("--compare", type=Path, metavar="NEW.json",
                        help="with --baseline: compare this bench JSON instead of running the bench")
    parser.add_argument("--min-slowdown", type=_fraction, default=MIN_SLOWDOWN, metavar="FRACTION",
                        help=f"smallest relative slowdown reported (default {MIN_SLOWDOWN:g}: 10 %%)")
    parser.add_argument("--fail-on-drift", action="store_true",
                        help="exit 1 when a kernel is slower than the --baseline (drift is otherwise only reported)")


def report_bench_drift(baseline: dict[str, Any], new_run: dict[str, Any], args: argparse.Namespace, code: int) -> int:
    """Print the comparison with the baseline and return the exit code: `code`, or 1 under --fail-on-drift when a
    kernel got slower (verdict.with_drift)."""
    comparison = diff_bench(baseline, new_run, label=str(args.baseline), min_slowdown=args.min_slowdown)
    if args.compare is None and args.repeats < 2:
        print("warning: --repeats 1 measures no spread: only the margin tells a slower kernel from noise",
              file=sys.stderr)
    for note in comparison.notes:
        print(f"note: {note}", file=sys.stderr)
    print(markdown(comparison))
    for d in comparison.of("slower"):
        print(f"DRIFT {d.shape} {d.kernel} (group size {d.group_size}): slower, {d.reason()}", file=sys.stderr)
    return verdict.with_drift(code, len(comparison.of("slower")), args.fail_on_drift)
