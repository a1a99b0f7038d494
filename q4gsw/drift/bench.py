"""`bench --baseline OLD.json`: which kernels got slower than a baseline bench JSON, beyond the measured noise.

A bench row's time is the best of its repeats; the repeats also give its median and its spread (slowest - best
repeat). Per (shape, kernel), the shape being the op's dims with the group size as run, a kernel is slower when

    new_best - old_best > old_spread + new_spread   and   new_best > (1 + min_slowdown) * old_best

(faster is the mirror image): the new time must clear both runs' own noise and a minimum relative margin
(MIN_SLOWDOWN, --min-slowdown), so that neither a noisy run nor a steady few-percent wobble is reported. A
baseline written before the spread was recorded (an older q4gsw) has none: only the margin applies, and one note
says so. The rule, and the run-to-run spread it was sized against, are in docs/results.md.

A row recorded as wrong (correct: false) is never timed against anything: a wrong kernel in the new bench fails it
(as the bench itself does), one in the baseline is left out. The gate (--fail-on-drift) also fails on a kernel
timed in the baseline and not now (unmeasured), one missing from a shape this bench timed (removed, unless
--accept-removed), and a comparison of nothing. A bench JSON holding what no bench writes (times <= 0 or NaN, a spread
its samples do not give, a group size that is no whole number) or timing another op is refused before any work.
A row of bench format 2 (MxKxN and the group size bench was asked for) is read into the op's dims
(q4gsw.report.scoreboard.row_shape), so a baseline bench from then still compares.
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
from q4gsw.report.scoreboard import ScoreboardError, read_bench, row_shape

# 3: rows carry the op's dims (and the shape text); 2: rows carry median_s, spread_s and samples_s, the shape as MxKxN
# and the group size bench was asked for; a file without the key is format 1: best only
BENCH_FORMAT = 3
MIN_SLOWDOWN = 0.10
KINDS = ("wrong", "slower", "faster", "new", "vanished", "unmeasured", "same")  # the order they are listed in
FIX = "pass a bench JSON written by `python -m q4gsw bench --json PATH` (results.json files: `report --baseline`)"
CORRUPT_FIX = ("no q4gsw bench writes that: the file was changed or damaged since; rerun the baseline bench (or "
               "restore its JSON) and compare with that")
STATS = ("median_s", "spread_s")


def repeat_stats(samples: Sequence[float]) -> dict[str, Any]:
    """median_s, spread_s and samples_s of a bench row from the seconds of each timed repeat (none: unknown)."""
    if not samples:
        return {}
    return {"median_s": statistics.median(samples), "spread_s": max(samples) - min(samples),
            "samples_s": list(samples)}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _samples_problem(row: dict[str, Any]) -> str:
    """Why a row's samples_s, median_s and spread_s are not what a bench wrote ('' when they are): its best time,
    median and spread are those of its samples (repeat_stats), so a spread that would hide any slowdown is refused."""
    samples = row.get("samples_s") or []
    if not isinstance(samples, list):
        return f"samples_s is a {type(samples).__name__}, not a list"
    for index, sample in enumerate(samples):
        if isinstance(sample, bool) or not isinstance(sample, int | float):
            return f"samples_s[{index}] is a {type(sample).__name__}, not a time"
        if not (math.isfinite(sample) and sample > 0):
            return f"samples_s[{index}] is {sample!r}: a time is > 0"
    for name in STATS:
        value = row.get(name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            return f"{name} is {value!r}"
    if not samples:
        return "has spread_s or median_s but no samples_s they come from" if any(
            row.get(name) is not None for name in STATS) else ""
    best, stats = row["time_s"], repeat_stats(samples)
    if best is None or not math.isclose(best, min(samples), rel_tol=1e-9):
        return f"time_s {best!r} is not the best of its samples_s ({min(samples)!r})"
    for name, said in (("spread_s", "slowest - best"), ("median_s", "their median")):
        value = row.get(name)
        if value is not None and not math.isclose(value, stats[name], rel_tol=1e-6, abs_tol=1e-12):
            return f"{name} {value!r} is not what its samples_s say ({said} = {stats[name]!r})"
    return ""


def _row_problem(row: dict[str, Any]) -> str:
    """What in a bench row no bench writes ('' when nothing): the values the comparison reads."""
    if "group_size" in row and not _whole(row["group_size"]):
        return f"group_size is {row['group_size']!r}, not a whole number"
    dims = row.get("dims", {})
    if not isinstance(dims, dict) or not all(isinstance(k, str) and _whole(v) for k, v in dims.items()):
        return f"dims is {dims!r}, not the op's dims as whole numbers"
    best = row["time_s"]
    if best is not None and not (math.isfinite(best) and best > 0):
        return f"time_s is {best!r}: a time is > 0"
    return _samples_problem(row)


def read_baseline(path: Path, option: str = "--baseline") -> dict[str, Any]:
    """A bench JSON to compare with, checked (one line naming the file and the fix: ScoreboardError)."""
    run = read_bench(path, option, FIX)
    for index, row in enumerate(run["rows"]):
        for name in STATS:
            value = row.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ScoreboardError(f"{option} {path}: row {index}: '{name}' is a {type(value).__name__}: {FIX}")
        problem = _row_problem(row)
        if problem:
            raise ScoreboardError(f"{option} {path}: row {index} ({row['shape']} {row['kernel']}): {problem}: "
                                  f"{CORRUPT_FIX}")
    if run.get("group_size") is not None and not _whole(run["group_size"]):
        raise ScoreboardError(f"{option} {path}: group_size is {run['group_size']!r}, not a whole number: "
                              f"{CORRUPT_FIX}")
    return run


def op_problem(baseline: dict[str, Any], path: Path, op: str | None, against: str = "this bench") -> str:
    """One line when the baseline bench JSON times another op than `op` ('' when the same, or either is unknown:
    a bench JSON written before ops were recorded)."""
    old = baseline.get("op")
    if not old or not op or old == op:
        return ""
    return (f"--baseline {path}: times op {old}, {against} op {op}: compare bench JSONs of one op (bench --op {old}, "
            f"or a baseline bench of --op {op})")


@dataclass(frozen=True)
class TimeDelta:
    """One kernel on one shape in both bench runs."""

    shape: str  # the op's words for the dims both rows ran
    kernel: str
    dims: tuple[tuple[str, Any], ...]  # those dims (group size as run), sorted: what rows are matched by
    kind: str  # one of KINDS
    old_s: float | None = None  # best times
    new_s: float | None = None
    old_spread_s: float = 0.0
    new_spread_s: float = 0.0
    message: str = ""  # the new row's, for a wrong or unmeasured kernel
    covered: bool = True  # a vanished kernel: this bench timed its shape (its dims)

    @property
    def label(self) -> str:
        return f"{self.shape} {self.kernel}"

    def gate_line(self) -> str:
        """Why this kernel fails the gate, in one line ('' when it does not)."""
        if self.kind == "slower":
            return f"DRIFT {self.label}: slower, {self.reason()}"
        if self.kind == "unmeasured" and self.old_s is not None:
            return f"UNMEASURED {self.label}: timed in the baseline ({self.old_s * 1e3:.3f} ms), not now: " + \
                (self.message or "no time")
        if self.kind == "vanished" and self.covered:
            return f"REMOVED {self.label}: timed in the baseline, not in this bench of its shape"
        return ""

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
    nothing_why: str = ""  # what each side times, for a comparison of nothing

    def of(self, kind: str) -> list[TimeDelta]:
        return [d for d in self.deltas if d.kind == kind]

    @property
    def compared(self) -> int:
        return sum(len(self.of(kind)) for kind in ("slower", "faster", "same"))

    def gate(self, accept_removed: bool = False) -> list[str]:
        """Why the gate fails (--fail-on-drift), one line each; [] when it holds. Wrong kernels fail anyway."""
        lines = [d.gate_line() for d in self.deltas if not (accept_removed and d.kind == "vanished")]
        if not self.compared:
            lines.append(f"NOTHING COMPARED: 0 kernels compared with {self.baseline}: {self.nothing_why}")
        return [line for line in lines if line]

    def line(self) -> str:
        counts = {kind: len(self.of(kind)) for kind in KINDS}
        compared = self.compared
        kernels = "kernel" if compared == 1 else "kernels"
        return (f"{counts['wrong']} wrong, {counts['slower']} slower, {counts['faster']} faster, {counts['new']} new, "
                f"{counts['vanished']} vanished, {counts['unmeasured']} without a time ({compared} {kernels} "
                f"compared with {self.baseline})")


def _key(row: dict[str, Any], run: dict[str, Any]) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
    """(shape text, kernel, dims): a row's identity is its dims; the text is the op's words for them."""
    dims, text = row_shape(row, run)
    return text, str(row["kernel"]), dims


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


def _timed(run: dict[str, Any], rows: int) -> str:
    shapes = sorted({_key(r, run)[0] for r in run["rows"]})
    if not shapes:
        return "no rows"
    kernels = "kernel" if rows == 1 else "kernels"
    return f"{rows} {kernels} on " + ", ".join(shapes)


def diff_bench(old_run: dict[str, Any], new_run: dict[str, Any], *, label: str,
               min_slowdown: float = MIN_SLOWDOWN) -> BenchComparison:
    """Match two bench JSONs' rows by (dims, kernel) and judge each kernel present in both. A wrong
    row of the new bench is 'wrong', never timed; one of the baseline is left out (a note says so)."""
    old = {_key(r, old_run): r for r in old_run["rows"] if r["correct"] is not False}
    new: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in new_run["rows"]:  # a kernel timed twice on a shape (--shapes A A, a hand-merged file): a wrong row wins
        if _key(r, new_run) not in new or r["correct"] is False:
            new[_key(r, new_run)] = r
    deltas = []
    for key, row in new.items():
        if row["correct"] is False:
            deltas.append(TimeDelta(*key, "wrong", _time(old[key]) if key in old else None, _time(row),
                                    message=row["message"] or "wrong result"))
        elif key not in old:
            deltas.append(TimeDelta(*key, "new", new_s=_time(row)))
        else:
            before, after = _time(old[key]), _time(row)
            spreads = (_spread(old[key]), _spread(row))
            kind = "unmeasured" if before is None or after is None else judge(before, after, *spreads, min_slowdown)
            deltas.append(TimeDelta(*key, kind, before, after, *spreads, message=row["message"]))
    timed = {(shape, gs) for shape, _, gs in new}
    deltas += [TimeDelta(*key, "vanished", old_s=_time(row), covered=(key[0], key[2]) in timed)
               for key, row in old.items() if key not in new]
    notes = []
    wrong_before = sum(1 for r in old_run["rows"] if r["correct"] is False)
    if wrong_before:
        rows = "row of the baseline recorded as wrong (correct: false) is" if wrong_before == 1 else \
            "rows of the baseline recorded as wrong (correct: false) are"
        notes.append(f"{wrong_before} {rows} not compared")
    if old and not any(any(r.get(s) is not None for s in STATS) for r in old.values()):
        notes.append(f"{label} records no spread over repeats (written by an older q4gsw): only the "
                     f"{min_slowdown:.0%} margin applies to it")
    where = [(run.get("backend"), run.get("webgpu"), (run.get("adapter") or {}).get("name")) for run in
             (old_run, new_run)]
    if where[0] != where[1]:
        notes.append(f"{label} was run on {where[0]}, this bench on {where[1]}: times from different adapters or "
                     "WebGPU implementations are not of the same machine")
    ordered = sorted(deltas, key=lambda d: KINDS.index(d.kind))
    nothing_why = "the baseline has no rows" if not old_run["rows"] else \
        f"the baseline times {_timed(old_run, len(old_run['rows']))}; this bench {_timed(new_run, len(new))}"
    return BenchComparison(label, tuple(ordered), min_slowdown, tuple(notes), nothing_why)


def markdown(comparison: BenchComparison) -> str:
    """The moved kernels as a Markdown table (the bench prints Markdown, like its scoreboard), then the verdict."""
    lines = []
    moved = [d for d in comparison.deltas if d.kind not in ("same",)]
    if moved:
        lines += ["| change | shape | kernel | baseline ms | now ms | ratio | spreads ms (baseline + now) |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
        for d in moved:
            def ms(value: float | None) -> str:
                return f"{value * 1e3:.3f}" if value else "-"

            lines.append(f"| {d.kind.upper() if d.kind == 'slower' else d.kind} | {d.shape} | {d.kernel} | "
                         f"{ms(d.old_s)} | {ms(d.new_s)} | "
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
                        help="exit 1 when the comparison with the --baseline fails the gate: a kernel slower, timed "
                             "before and not now, missing from a shape this bench timed, or nothing compared "
                             "(otherwise all this is only reported; a wrong kernel fails anyway)")
    parser.add_argument("--accept-removed", action="store_true",
                        help="kernels the --baseline timed that this bench did not, on a shape it timed (removed on "
                             "purpose), do not fail the gate; they are still listed")


def report_bench_drift(baseline: dict[str, Any], new_run: dict[str, Any], args: argparse.Namespace, code: int) -> int:
    """Print the comparison with the baseline and return the exit code: `code`; 1 for a wrong kernel; 1 under
    --fail-on-drift when the comparison fails the gate (verdict.with_drift)."""
    comparison = diff_bench(baseline, new_run, label=str(args.baseline), min_slowdown=args.min_slowdown)
    if args.compare is None and args.repeats < 2:
        print("warning: --repeats 1 measures no spread: only the margin tells a slower kernel from noise",
              file=sys.stderr)
    for note in comparison.notes:
        print(f"note: {note}", file=sys.stderr)
    print(markdown(comparison))
    for d in comparison.of("wrong"):  # a wrong kernel fails the bench, as `bench` itself does
        print(f"WRONG {d.label}: {d.message}", file=sys.stderr)
    gate = comparison.gate(args.accept_removed)
    for line in gate:
        print(line, file=sys.stderr)
    if comparison.of("wrong") and code == verdict.OK:
        code = verdict.FAILED
    return verdict.with_drift(code, len(gate), args.fail_on_drift)
