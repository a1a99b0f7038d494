"""`--baseline` for `run`, `check` and `report`: the options, and reading the baseline run's results.

The baseline comes from outside the run (main's CI artifact, another checkout's results folder, a mistyped path),
so it is read and checked before any work: a path that is missing, holds no results.json, is not a q4gsw
results.json, or is a bench JSON is a usage error of one line naming the file and the fix (BaselineError, exit 2).
So is a result holding what no run writes (result_problem: NaN, negative or text errors, a pass without errors, a
malformed histogram, an impossible tolerance): compared, a negative error read as drift and a NaN one as 'same'.
Cases it has that no longer exist (a kernel, backend or config removed since) are reported as vanished by
q4gsw.drift.rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from q4gsw.drift.rule import DEFAULT_FACTOR, MEASURED, Comparison, Scope, diff_runs
from q4gsw.matrix.values import Errors, Tolerance
from q4gsw.report.junit import case_label
from q4gsw.report.result import STATUSES, Provenance, Result, ResultsSchemaError, results_from_payload
from q4gsw.report.results_files import ReportError, find_results

FIX = ("pass the results folder (or its results.json) of the run to compare with, as `run --results DIR` or "
       "`report` wrote it")
CORRUPT_FIX = ("no q4gsw run writes that: the file was changed or damaged since; rerun the baseline run (or restore "
               "its results.json) and compare with that")


class BaselineError(ValueError):
    """A --baseline that cannot be compared with; str() is one line: the file, what is wrong, and the fix."""

    def __init__(self, path: Path, problem: str, fix: str = FIX) -> None:
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}: {fix}")


@dataclass(frozen=True)
class Baseline:
    """The run to compare with, and how: its results, where they came from, the default factor, the exit rule."""

    label: str
    results: tuple[Result, ...]
    factor: float = DEFAULT_FACTOR
    fail_on_drift: bool = False
    sources: tuple[Path, ...] = ()  # the results.json files read
    accept_removed: bool = False  # cases the baseline measured and this run did not do not fail the gate
    accept_new: bool = False  # a run whose every case is new since the baseline (of its backend) holds the gate


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 2 or 3.5)") from None
    if not math.isfinite(value) or value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the factor must be greater than 1 (e.g. 2: error may double)")
    return value


def add_baseline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", type=Path, metavar="OLD",
                        help="compare with this run's results (its results folder or results.json): new, vanished "
                             "and changed-status cases, error ratios, and drift (docs/results.md)")
    parser.add_argument("--drift-factor", type=_factor, default=DEFAULT_FACTOR, metavar="F",
                        help=f"a case drifted when its error grew more than F times (default {DEFAULT_FACTOR:g}); "
                             "a config's own drift_factor in matrix.toml wins")
    parser.add_argument("--fail-on-drift", action="store_true",
                        help="exit 1 when the comparison with the --baseline fails the gate: a case drifted or "
                             "stopped passing, a case it measured is missing now, or nothing was compared "
                             "(otherwise all this is only reported)")
    parser.add_argument("--accept-removed", action="store_true",
                        help="cases the --baseline measured that this run covered and did not measure (a kernel "
                             "removed on purpose) do not fail the gate; they are still listed")
    parser.add_argument("--accept-new", action="store_true",
                        help="a run whose every measured case is new since the --baseline (configs added since it "
                             "ran: a CI shard of a new op) holds the gate although it compared nothing; a baseline "
                             "of another backend still fails it")


def _kind_problem(payload: Any) -> tuple[str, str] | None:
    """(problem, fix) when a parsed JSON file is not a results.json; None when it is one."""
    if isinstance(payload, dict) and isinstance(payload.get("rows"), list) and "results" not in payload:
        return ("is a bench JSON (from `q4gsw bench`), not a results.json",
                "compare bench JSONs with `python -m q4gsw bench --baseline OLD.json`")
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        return "is not a q4gsw results.json (no 'results' list)", FIX
    return None


def _describe(value: Any) -> str:
    name = type(value).__name__
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name} ({value!r})" if isinstance(value, str | int | float) else f"{article} {name}"


def _number_problem(name: str, value: Any, *, finite: bool, nan: bool = False) -> str:
    """Why `value` is no error measure or tolerance ('' when it is one): a number >= 0, finite if asked."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} is {_describe(value)}, not a number"
    if math.isnan(value):
        return "" if nan else f"{name} is nan"
    if value < 0:
        return f"{name} is {value!r} (negative)"
    return f"{name} is {value!r}" if finite and math.isinf(value) else ""


def _histogram_problem(histogram: Any) -> str:
    """Why a recorded |err| histogram (report/histogram.py) cannot be read ('' when it can, or is empty)."""
    if not isinstance(histogram, dict):
        return f"errors.histogram is a {type(histogram).__name__}, not an object"
    if not histogram:
        return ""  # an older q4gsw recorded none: only max |err| is compared
    counts, edges = histogram.get("counts"), histogram.get("log10_edges")
    if not isinstance(counts, list) or not isinstance(edges, list) or len(edges) != len(counts) + 1:
        sizes = [len(v) if isinstance(v, list) else type(v).__name__ for v in (counts, edges)]
        return f"errors.histogram has {sizes[0]} counts for {sizes[1]} edges (a count per bin between two edges)"
    for index, edge in enumerate(edges):
        if isinstance(edge, bool) or not isinstance(edge, int | float) or not math.isfinite(edge):
            return f"errors.histogram.log10_edges[{index}] is {_describe(edge)}, not a finite number"
    if any(b <= a for a, b in itertools.pairwise(edges)):
        return "errors.histogram.log10_edges are not increasing"
    named = [(f"counts[{i}]", c) for i, c in enumerate(counts)]
    named += [(key, histogram[key]) for key in ("zero", "below", "above", "nonfinite") if key in histogram]
    for name, count in named:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return f"errors.histogram.{name} is {_describe(count) if not isinstance(count, int) else count}, " \
                   "not a count"
    return ""


TEXT_FIELDS = ("config", "backend", "case_id", "op", "kernel", "input", "role", "message")  # what cases match by
COUNTS = ("mismatches", "elements", "nonfinite", "guard_violations")


def _text_problem(result: Result) -> str:
    """A field the comparison matches or names cases by that is not text ('' when all are): an int case id got
    past the checks and broke the comparison after the run."""
    for name in TEXT_FIELDS:
        value = getattr(result, name)
        if not isinstance(value, str):
            return f"'{name}' is {_describe(value)}, not text"
    if not isinstance(result.provenance, Provenance):
        return f"'provenance' is {_describe(result.provenance)}, not an object"
    source = result.provenance.kernel_source
    return "" if isinstance(source, str) else f"'provenance.kernel_source' is {_describe(source)}, not text"


def _counts_problem(errors: Errors) -> str:
    for name in COUNTS:
        value = getattr(errors, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"errors.{name} is {value!r}, not a count"
    return ""


def result_problem(result: Result) -> str:
    """What in a baseline result no q4gsw run writes ('' when nothing): the values the drift rule reads."""
    if result.status not in STATUSES:
        return f"status {result.status!r} is not one of {', '.join(STATUSES)}"
    problem = _text_problem(result)
    if problem:
        return problem
    tolerance = result.tolerance
    if tolerance is not None:
        if not isinstance(tolerance, Tolerance):
            return f"'tolerance' is {_describe(tolerance)}, not an object"
        problem = next(filter(None, (_number_problem(f"tolerance.{name}", getattr(tolerance, name), finite=True)
                                     for name in ("atol", "rtol"))), "")
        if problem:
            return problem
    if result.status not in MEASURED:
        return ""
    errors = result.errors
    if errors is None:
        return "a pass with no 'errors'" if result.status == "pass" else ""
    if not isinstance(errors, Errors):
        return f"'errors' is {_describe(errors)}, not an object"
    passed = result.status == "pass"  # a failed case may hold inf (non-finite outputs) or nan (a broken golden)
    for name, finite in (("max_abs", passed), ("headroom", passed), ("max_rel", False)):
        problem = _number_problem(f"errors.{name}", getattr(errors, name), finite=finite, nan=not passed)
        if problem:
            return problem
    return _counts_problem(errors) or _histogram_problem(errors.histogram)


def read_baseline(path: Path) -> Baseline:
    """The baseline's results (every results.json the path names, as `report` finds them); BaselineError if none."""
    if not path.exists():
        raise BaselineError(path, "no such file or folder")
    try:
        paths = find_results([path])
    except ReportError:
        # A folder holding only merged reports (`report --out`) is a baseline too: the merge is the whole run.
        paths = sorted(path.rglob("results.json")) if path.is_dir() else []
        if not paths:
            raise BaselineError(path, "holds no results.json") from None
    results: list[Result] = []
    for found in paths:
        try:
            payload = json.loads(found.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise BaselineError(found, f"is not a q4gsw results.json ({type(exc).__name__})") from None
        problem = _kind_problem(payload)
        if problem:
            raise BaselineError(found, *problem)
        try:
            read = results_from_payload(found, payload)
        except ResultsSchemaError as exc:  # a schema 2 case that cannot be converted: the one line says why
            raise BaselineError(found, exc.problem, "rerun the baseline with this q4gsw") from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise BaselineError(found, f"has results q4gsw cannot read ({type(exc).__name__}: {exc})") from None
        for index, result in enumerate(read):
            problem = result_problem(result)
            if problem:
                raise BaselineError(found, f"result {index} ({case_label(result)}): {problem}", CORRUPT_FIX)
        results += read
    return Baseline(label=str(path), results=tuple(results), sources=tuple(paths))


def diff_with(baseline: Baseline, results: Sequence[Result], scope: Scope | None = None) -> tuple[Comparison | None,
                                                                                                  str]:
    """(the comparison of these results with the baseline, '') or (None, why it broke). The comparison is secondary
    to the run's own results: they are written with or without it (and under --fail-on-drift the gate cannot hold)."""
    try:
        comparison = diff_runs(baseline.results, results, label=baseline.label, factor=baseline.factor, scope=scope,
                               accept_removed=baseline.accept_removed, accept_new=baseline.accept_new)
        comparison.gate()  # what breaks, breaks here: before any report is written
    except Exception as exc:
        return None, (f"the comparison with the baseline {baseline.label} failed ({type(exc).__name__}: {exc}); the "
                      "results are written without it")
    return comparison, ""


# Options of the comparison: nothing to do without --baseline.
GATE_OPTIONS = ("--fail-on-drift", "--accept-removed", "--accept-new")


class LoneGateOption(ValueError):
    """--fail-on-drift or --accept-removed without --baseline: alone, `--fail-on-drift` compared nothing and exited
    0, a green gate that never ran. str() is one line: the option, the problem and the fix."""

    def __init__(self, option: str, also: Sequence[str] = (), baseline: str = "OLD (the run to compare with)") -> None:
        self.option = option
        self.problem = f"needs --baseline {baseline}: without one nothing is compared, no gate runs"
        self.fix = f"add --baseline {baseline.split()[0]}, or drop {' and '.join([option, *also])}"
        super().__init__(f"{option} {self.problem}: {self.fix}")


def check_gate_options(args: argparse.Namespace, **words: str) -> None:
    """LoneGateOption when a gate option is given without a baseline (`bench` words its baseline itself)."""
    if getattr(args, "baseline", None) is not None:
        return
    given = [option for option in GATE_OPTIONS if getattr(args, option[2:].replace("-", "_"), False)]
    if given:
        raise LoneGateOption(given[0], given[1:], **words)


def baseline_from_args(args: argparse.Namespace) -> Baseline | None:
    """The --baseline of a parsed command line with its options (None without one); raises BaselineError, or
    LoneGateOption for --fail-on-drift or --accept-removed without it."""
    check_gate_options(args)
    path = getattr(args, "baseline", None)
    if path is None:
        return None
    baseline = read_baseline(path)
    return Baseline(baseline.label, baseline.results, args.drift_factor, args.fail_on_drift, baseline.sources,
                    args.accept_removed, getattr(args, "accept_new", False))


def run_baseline(args: argparse.Namespace) -> Baseline | None:
    """baseline_from_args for `run` and `check`: a bad --baseline is their usage error, a MatrixError naming the
    option (exit 2, nothing run)."""
    from q4gsw.matrix.checker import MatrixError

    try:
        return baseline_from_args(args)
    except BaselineError as exc:
        raise MatrixError("command line", args.command, "--baseline", f"{exc.path}: {exc.problem}", exc.fix) from None
    except LoneGateOption as exc:
        raise MatrixError("command line", args.command, exc.option, exc.problem, exc.fix) from None
