"""A run as a list of stages, as in nox's workflow.execute: each stage is a function of the run's state, run in
order until one stops the run; one finish stage records what the verdict rules add and orders the results, and
verdict.exit_code decides the exit code.

    select (record skips) -> cache -> order -> prewarm -> start exporting -> provision, probe, route -> execute

CHECK_STAGES runs each config in a child process (children.py), the fixtures coming from one export process
started before the backend is probed (exporter.py); IN_PROCESS_STAGES (`run --in-process`) runs everything in
this process (inprocess.py). The mode is "check" (fixtures, judged against goldens) or "bench" (synthetic
problems from a seed, timed with repeats).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from q4gsw.cases import Selection
from q4gsw.console import CLOCK_ENV, say
from q4gsw.matrix.load import Config
from q4gsw.paths import unusable_folder
from q4gsw.report.result import Result
from q4gsw.report.verdict import required_not_run
from q4gsw.run.exporter import FixtureLookup, exported_in_process, fixture_provider
from q4gsw.run.options import RunOptions
from q4gsw.run.procs import PREWARM_ENV, ChildPolicy
from q4gsw.run.records import config_failure, in_matrix_order, skip_result


def no_fixture(config: Config) -> tuple[Path | None, str, float]:
    return None, "", 0.0  # bench: the child builds a synthetic problem


@dataclass
class RunState:
    """What the stages hand on. `stopped` says why a stage ended the run early ("" while it goes on)."""

    selection: Selection
    options: RunOptions
    root: Path
    record: Callable[[Result], None]
    stack: contextlib.ExitStack
    runnable: list[Config] = field(default_factory=list)
    exporting: bool = False
    policy: ChildPolicy = field(default_factory=ChildPolicy)
    fixture_for: FixtureLookup = no_fixture
    env: dict[str, str] = field(default_factory=dict)  # the children's: the backend's ICD
    stopped: str = ""


def record_skips(state: RunState) -> None:
    for skip in state.selection.skipped:
        state.record(skip_result(skip, state.selection))


def check_cache(state: RunState) -> None:
    """A cache this run must export into but cannot use fails every selected config with one message. Only a
    fixture still to export needs a writable cache: a read-only one holding every fixture runs (loading and
    verifying a fixture writes nothing)."""
    runnable = [c for c in state.selection.configs if state.selection.cases_of(c)]
    needs_writing = must_export(state.options, runnable)
    problem = unusable_folder(state.options.fixtures.cache, "cache") if needs_writing else ""
    if problem:
        state.stopped = f"{problem} (nothing was exported or run)"
        say(f"error: {state.stopped}")
        for config in state.selection.configs:
            state.record(config_failure(config, state.selection, state.stopped, state.selection.cases_of(config)))


def must_export(options: RunOptions, runnable: list[Config]) -> bool:
    from q4gsw.export.fixtures import fixture_dir

    return options.exports_into_cache and any(not fixture_dir(options.fixtures.cache, c).exists() for c in runnable)


def execution_order(configs: list[Config]) -> list[Config]:
    """The most GPU work first (the op's FLOPs; ties keep the matrix order), for runs that export: the exports of
    the other configs then run beside the longest GPU job instead of the run ending on it after every export is
    done. Runs whose fixtures all exist keep the matrix order."""
    from q4gsw.ops import op_for

    return sorted(configs, key=lambda c: -op_for(c).flops(c))


def order_configs(state: RunState) -> None:
    state.runnable = [c for c in state.selection.configs if state.selection.cases_of(c)]
    state.exporting = must_export(state.options, state.runnable)
    if state.exporting:
        state.runnable = execution_order(state.runnable)


def prewarm_switched_off() -> bool:
    """Q4GSW_PREWARM=0 (or empty): no cold-start machinery, and prewarm.py is not even imported."""
    text = os.environ.get(PREWARM_ENV)
    return text is not None and text.replace(",", "").strip() in ("", "0")


def prewarm_switch_error() -> str:
    """Why Q4GSW_PREWARM cannot be read ('' when it can): commands check it before any work (exit 2)."""
    if os.environ.get(PREWARM_ENV) is None or prewarm_switched_off():
        return ""
    from q4gsw.run.prewarm import PrewarmSwitchError, parse_switch

    try:
        parse_switch(os.environ.get(PREWARM_ENV))
    except PrewarmSwitchError as exc:
        return str(exc)
    return ""


def start_prewarm(state: RunState) -> None:
    """The cold-start machinery Q4GSW_PREWARM leaves on (on by default; see prewarm.py)."""
    if prewarm_switched_off():
        return
    from q4gsw.run import prewarm

    state.policy = prewarm.parse_switch(os.environ.get(PREWARM_ENV)).policy(state.options.mode)


def start_exporting(state: RunState) -> None:
    """Now, before provisioning: on a cold machine exporting is the longest stage."""
    if state.options.mode == "bench":
        return
    state.fixture_for = state.stack.enter_context(fixture_provider(state.options.fixtures, state.runnable))


def fixtures_in_process(state: RunState) -> None:
    if state.options.mode == "check":
        state.fixture_for = exported_in_process(state.options.fixtures)


def open_backend(state: RunState) -> None:
    """Provision, probe (in a child, or here with --in-process) and route."""
    from q4gsw.run import backend

    find = backend.probe_in_process if state.options.in_process else backend.probe
    opened = backend.open_backend(state.selection, state.record, find)
    if opened is None:
        state.stopped = f"backend '{state.selection.backend.name}' unavailable"
        return
    state.env, state.selection = opened


def execute_in_children(state: RunState) -> None:
    from q4gsw.run.children import execute_configs

    execute_configs(state.selection, state.runnable, state.fixture_for, state.env, state.options, state.root,
                    state.record, state.policy)


def execute_here(state: RunState) -> None:
    from q4gsw.run.inprocess import execute_in_process

    execute_in_process(state.selection, state.runnable, state.fixture_for, state.options, state.root, state.record)


Stage = tuple[str, Callable[[RunState], None]]
CHECK_STAGES: tuple[Stage, ...] = (
    ("select", record_skips), ("cache", check_cache), ("order", order_configs), ("prewarm", start_prewarm),
    ("start exporting", start_exporting), ("provision, probe, route", open_backend), ("execute", execute_in_children))
IN_PROCESS_STAGES: tuple[Stage, ...] = (
    ("select", record_skips), ("cache", check_cache), ("order", order_configs), ("fixtures", fixtures_in_process),
    ("provision, probe, route", open_backend), ("execute", execute_here))


def stages_for(options: RunOptions) -> tuple[Stage, ...]:
    return IN_PROCESS_STAGES if options.in_process else CHECK_STAGES


def required_without_a_run(selection: Selection, results: list[Result]) -> list[Result]:
    """A required config none of whose cases executed fails (verdict.required_not_run): a run that checked
    nothing is not green."""
    backend = selection.backend.name
    required = {c.name: c for c in selection.configs if c.tier == "required"}
    failures = []
    for name, _ in required_not_run(results, [(name, backend) for name in required]):
        reasons = "; ".join(dict.fromkeys(r.message for r in results if r.config == name)) or "no case was selected"
        failures.append(config_failure(required[name], selection,
                                       f"required config '{name}' ran no case on '{backend}': {reasons}", ()))
    return failures


def run_selection(selection: Selection, options: RunOptions, root: Path,
                  on_result: Callable[[Result], None] = lambda r: None,
                  matrix_order: Sequence[str] = ()) -> list[Result]:
    """Run the stages in order until one stops the run, then finish: the verdict rules' failures recorded, the
    results in matrix order."""
    results: list[Result] = []
    os.environ.setdefault(CLOCK_ENV, repr(time.time()))  # the run's one clock starts before provisioning

    def record(result: Result) -> None:
        results.append(result)
        on_result(result)

    with contextlib.ExitStack() as stack:  # the export process ends with the stages
        state = RunState(selection, options, root, record, stack)
        for _, stage in stages_for(options):
            stage(state)
            if state.stopped:
                break
    for failure in required_without_a_run(state.selection, results):
        record(failure)
    return in_matrix_order(results, state.selection, matrix_order)
