"""One child process per config (`python -m q4gsw _child JOB.json`): a driver crash, device loss or hung kernel
fails that config with its message and the run goes on. With prewarm's spares on, a config's child is started
before its fixture is in (it imports wgpu and opens its device meanwhile) and the children of the next configs
start as soon as it has its fixture; with them off, each child starts when its fixture is in."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from q4gsw.case import COMPILE_FAILURE, base_result
from q4gsw.cases import Case, Selection, to_plain
from q4gsw.console import last_lines as _last_lines
from q4gsw.console import say
from q4gsw.matrix.load import Config
from q4gsw.ops import op_for
from q4gsw.paths import NotOurs, job_folder, remove_owned
from q4gsw.report.result import Result, Timings
from q4gsw.run.exporter import FixtureLookup
from q4gsw.run.options import RunOptions
from q4gsw.run.procs import (
    NO_PREWARM,
    ChildOutcome,
    ChildPolicy,
    child_env,
    describe_exit,
    kill_child,
    start_child,
    wait_child,
)
from q4gsw.run.progress import BackendRate, Heartbeat, Work, dispatches_per_case
from q4gsw.run.records import config_failure


class ConfigChild:
    """One config's `_child`, started before its fixture is ready (a warm spare): it imports wgpu and opens its
    device while the export or the previous config runs. `finish(fixture)` hands it the fixture and starts its
    deadline; `cancel()` ends it unused. timeout_s is per kernel of the config: `--all-variants` or mutants run
    several kernels in one child."""

    def __init__(self, config: Config, selection: Selection, env: dict[str, str], options: RunOptions,
                 root: Path) -> None:
        self.config, self.env, self.root = config, env, root
        self.cases = selection.cases_of(config)
        self.repeats = options.repeats
        self.deadline_s = config.timeout_s * max(1, len({c.kernel.name for c in self.cases}))
        # Not a TemporaryDirectory: a SIGKILLed run cannot remove it; the next run removes a job folder whose run
        # is gone (paths.job_folder).
        self.folder = job_folder()
        self.out = self.folder / "results.json"
        job = self.folder / "job.json"
        job.write_text(json.dumps({"cases": [to_plain(c) for c in self.cases], "seed": options.problem_seed,
                                   "out": str(self.out), "repeats": options.repeats,
                                   "warmup_s": options.warmup_s, "root": str(root)}))
        self.err = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed by finish/cancel)
        self.proc = start_child([sys.executable, "-m", "q4gsw", "_child", str(job)], child_env(env), self.err,
                                stdin=subprocess.PIPE)

    def work(self) -> Work:
        kernels = list(dict.fromkeys(c.kernel.name for c in self.cases))
        what = f"{self.config.name} / {kernels[0]}" if len(kernels) == 1 else \
            f"{self.config.name} ({len(kernels)} kernels)"
        return Work(what, op_for(self.config).flops(self.config) * len(self.cases) * dispatches_per_case(self.repeats))

    def finish(self, fixture: Path | None, rate_gflops: float | None = None) -> list[Result]:
        heartbeat = Heartbeat(self.work(), rate_gflops)
        try:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it died while starting: its exit status says why
                self.proc.stdin.write(json.dumps({"fixture": str(fixture) if fixture else None,
                                                  "deadline_s": self.deadline_s}).encode() + b"\n")
                self.proc.stdin.close()
            outcome = wait_child(self.proc, self.err, self.deadline_s, on_tick=heartbeat)
            results = [Result.from_dict(r) for r in json.loads(self.out.read_text())] if self.out.is_file() else []
        finally:
            heartbeat.close()
            self.cancel()
        return self._completed(results, outcome)

    def _completed(self, results: list[Result], outcome: ChildOutcome) -> list[Result]:
        rss = outcome.peak_rss_bytes
        results = [replace(r, peak_rss_bytes=max(r.peak_rss_bytes, rss),
                           timings=replace(r.timings, total_s=outcome.duration_s),
                           log=outcome.log if r.status == "fail" else "") for r in results]
        results = [with_other_compiler(r, self.cases, self.env, self.root) for r in results]
        if outcome.returncode != 0 or len(results) < len(self.cases):
            done = {r.case_id for r in results}
            message = describe_exit(outcome, f"GPU run of '{self.config.name}'", self.deadline_s)
            for case in self.cases:
                if case.id not in done:
                    results.append(base_result(case, "fail", message, peak_rss_bytes=rss, log=outcome.log,
                                               timings=Timings(total_s=outcome.duration_s)))
        return results

    def cancel(self) -> None:
        if self.proc.returncode is None:
            kill_child(self.proc)
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self.err.close()
        with contextlib.suppress(OSError, NotOurs):
            remove_owned(self.folder, self.folder.parent)


def with_other_compiler(result: Result, cases: tuple[Case, ...], env: dict[str, str], root: Path) -> Result:
    """A kernel one WGSL compiler rejects: say whether the other implementation's compiler accepts it."""
    if result.status != "fail" or not result.message.startswith(COMPILE_FAILURE):
        return result
    case = next(c for c in cases if c.id == result.case_id)
    other = "wgpu-native" if case.backend.webgpu == "dawn" else "dawn"
    job = {"case": to_plain(replace(case, backend=replace(case.backend, webgpu=other))), "root": str(root)}
    try:
        proc = subprocess.run([sys.executable, "-m", "q4gsw", "_compile", json.dumps(job)], env=child_env(env),
                              capture_output=True, text=True, timeout=120)
        verdict = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else f"error: {_last_lines(proc.stderr)}"
    except subprocess.TimeoutExpired:
        verdict = "error: compiling timed out"
    from q4gsw.webgpu.execute import COMPILERS as names

    if verdict == "ok":
        note = (f" | {names[other]} compiles this kernel on the same adapter: the two WGSL compilers disagree; "
                f"ExecuTorch ships Dawn, so write WGSL that Tint accepts (check the WebGPU spec for the construct "
                "named above)")
    elif verdict.startswith("rejected"):
        note = f" | {names[other]} rejects it too: the WGSL itself is wrong"
    else:
        note = f" | could not ask {names[other]}: {verdict.removeprefix('error: ')}"
    return replace(result, message=result.message + note)


def announce(index: int, count: int, config: Config, selection: Selection) -> None:
    say(f"({index + 1}/{count}) {config.name} {op_for(config).shape_text(config.dims)} "
        f"[{config.tier}] on {selection.backend.name}")


def execute_configs(selection: Selection, runnable: list[Config], fixture_for: FixtureLookup, env: dict[str, str],
                    options: RunOptions, root: Path, record: Callable[[Result], None],
                    policy: ChildPolicy = NO_PREWARM) -> None:
    """Each config in its own child. With policy.spares_ahead > 0, a config's child starts before its fixture is
    in and, once it is, the children of the next spares_ahead configs start (import, open their device, build
    their first pipeline) while it runs: a config done in a fraction of a second (M = 1 on a warm device) does
    not leave the next one starting from nothing."""
    runnable = [c for c in runnable if selection.cases_of(c)]  # routing may have left a config nothing to run
    started: dict[int, ConfigChild] = {}  # by index in runnable: the current config's child and the spares
    rate = BackendRate()

    def start(index: int) -> ConfigChild:
        if index not in started:
            started[index] = ConfigChild(runnable[index], selection, env, options, root)
        return started[index]

    try:
        for index, config in enumerate(runnable):
            announce(index, len(runnable), config, selection)
            if policy.spares_ahead:
                start(index)
            fixture, problem, waited = fixture_for(config)
            if problem:
                if index in started:
                    started.pop(index).cancel()
                record(config_failure(config, selection, problem, selection.cases_of(config),
                                      timings=Timings(export_s=waited)))
                continue
            child = start(index)
            for ahead in range(index + 1, min(index + 1 + policy.spares_ahead, len(runnable))):
                start(ahead)
            results = child.finish(fixture, rate.gflops)
            del started[index]
            for result in results:
                rate.add(result)
                record(replace(result, timings=replace(result.timings, export_s=waited or None)))
    finally:  # Ctrl-C or an error here: no child outlives the run
        for leftover in started.values():
            leftover.cancel()
