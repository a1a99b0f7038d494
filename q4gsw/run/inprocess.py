"""`run --in-process`: the selected cases in the calling process, for debuggers and profilers. No child processes,
no spares, no export process: fixtures are exported here by the function the `_export` worker calls, the adapter
is found here, and each config runs case.execute_config, as a `_child` does, on a device shared with every
config that needs the same features (a pipeline is compiled once per run). A crash or hang of the
driver then ends the run (there is no child to lose instead); results, reports and exit codes are a normal run's.
A case that raises fails the rest of its config with the exception, and the run goes on; Ctrl-C keeps the cases
already judged (the rest of the config is recorded as not run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from q4gsw.case import base_result, execute_config, open_device
from q4gsw.cases import Case, Selection
from q4gsw.console import say
from q4gsw.matrix.load import Config
from q4gsw.report.result import Result, Timings
from q4gsw.run.children import announce
from q4gsw.run.exporter import FixtureLookup
from q4gsw.run.options import RunOptions
from q4gsw.run.records import config_failure
from q4gsw.run.workers import verdict_line


def execute_in_process(selection: Selection, runnable: list[Config], fixture_for: FixtureLookup,
                       options: RunOptions, root: Path, record: Callable[[Result], None]) -> None:
    """Each config's cases on one device opened here, as a `_child` runs them."""
    runnable = [c for c in runnable if selection.cases_of(c)]
    devices: dict[tuple[str, ...], Any] = {}  # by feature set: each pipeline compiled once per run (open_device)
    for index, config in enumerate(runnable):
        announce(index, len(runnable), config, selection)
        cases = selection.cases_of(config)
        fixture, problem_text, waited = fixture_for(config)
        if problem_text:
            record(config_failure(config, selection, problem_text, cases, timings=Timings(export_s=waited)))
            continue
        started = time.perf_counter()  # what a child's wall time measures: device, problem and every case
        done: list[Result] = []
        try:
            for result in execute_config(cases, fixture, options.problem_seed, root, options.repeats,
                                         opened=open_device(list(cases), devices), warmup_s=options.warmup_s):
                done.append(result)
                say(verdict_line(result), "    ")
        except Exception as exc:  # in a child this would be a crash of the config: its cases that ran are kept
            done += _rest(cases, done, "fail", f"{type(exc).__name__}: {exc} (raised while its config ran in this "
                                               "process: run --in-process)")
        except BaseException:  # Ctrl-C: the cases judged so far are kept, the rest were not run
            done += _rest(cases, done, "skip", "not run: the run was interrupted")
            raise
        finally:
            total_s = time.perf_counter() - started
            for result in done:
                record(replace(result, timings=replace(result.timings, export_s=waited or None, total_s=total_s)))


def _rest(cases: tuple[Case, ...], done: list[Result], status: str, message: str) -> list[Result]:
    """The cases of a config not judged yet, each with `status` and `message`."""
    judged = {r.case_id for r in done}
    return [base_result(case, status, message) for case in cases if case.id not in judged]
