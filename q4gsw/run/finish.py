"""The finish of a command-line run: the stages run with Ctrl-C and SIGTERM turned into a partial result, then
results.json, junit.xml, summary.md, the plots and the console table, the comparison with a --baseline run
(q4gsw.drift.rule), and the exit code (verdict.exit_code, verdict.with_drift)."""

from __future__ import annotations

import platform
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from q4gsw import __version__
from q4gsw.cases import Selection, Skip
from q4gsw.report.result import ReportNotWritten, Result
from q4gsw.report.verdict import FAILED, INTERRUPTED, exit_code, with_drift
from q4gsw.run.records import in_matrix_order, skip_result
from q4gsw.run.stages import RunOptions, run_selection

if TYPE_CHECKING:
    from q4gsw.drift.baseline import Baseline


def run_and_report(selection: Selection, options: RunOptions, root: Path, results_dir: Path, matrix_path: Path,
                   matrix_order: Sequence[str] = (), baseline: Baseline | None = None, family: str = "matrix") -> int:
    """family: the kind of kernels this run checks (drift.rule.kernel_family): the baseline's cases of another
    kind are outside it."""
    from q4gsw.drift.baseline import diff_with
    from q4gsw.drift.report import show_comparison
    from q4gsw.drift.rule import Scope
    from q4gsw.report.plots import HistogramsAhead, plots_switched_off
    from q4gsw.report.write import make_console, print_report, write_run_outputs
    from q4gsw.webgpu.adapter import package_of

    collected: list[Result] = []
    started = time.time()
    interrupted = False

    # SIGTERM (a cancelled CI job) stops like Ctrl-C: children killed, partial results kept.
    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous_sigterm = signal.signal(signal.SIGTERM, terminate)
    ahead = None if plots_switched_off() else HistogramsAhead()

    def recorded(result: Result) -> None:
        collected.append(result)
        if ahead is not None:
            ahead.add(result)

    try:
        run_selection(selection, options, root, on_result=recorded, matrix_order=matrix_order)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: writing the partial results", file=sys.stderr, flush=True)
        done = {r.config for r in collected}
        for config in selection.configs:  # every selected config stays in the results: those not finished say so
            if config.name not in done:
                collected.append(skip_result(Skip(config, "not run: the run was interrupted"), selection))
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    meta = {"q4gsw_version": __version__, "command": " ".join(sys.argv), "backend": selection.backend.name,
            "webgpu": selection.backend.webgpu, "webgpu_package": package_of(selection.backend.webgpu),
            "matrix": str(matrix_path),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "wall_s": time.time() - started, "host": platform.node(), "python": platform.python_version(),
            "interrupted": interrupted}
    collected = in_matrix_order(collected, selection, matrix_order)
    # Only the baseline's cases of the configs and backend this run selected are compared: a run of some configs (a
    # shard, --config) against a whole run's results lists no other config as vanished.
    scope = Scope(selection.backend.name, frozenset(c.name for c in selection.configs), family)
    comparison, problem = diff_with(baseline, collected, scope) if baseline is not None else (None, "")
    fail_on_drift = baseline is not None and baseline.fail_on_drift
    try:
        path = write_run_outputs(results_dir, collected, meta, plots_ahead=ahead, comparison=comparison,
                                 fail_on_drift=fail_on_drift)
    except ReportNotWritten as exc:
        # The table still shows what ran; the run fails: a CI step reading results/ would read the previous run's.
        print_report(collected)
        print(f"error: {exc}; the run's results are only in the table above", file=sys.stderr, flush=True)
        return INTERRUPTED if interrupted else FAILED
    print_report(collected)
    gate_failures = show_comparison(comparison, problem, fail_on_drift, make_console())
    print(f"results: {path} (wall {meta['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    return with_drift(exit_code(collected, interrupted), gate_failures, fail_on_drift)
