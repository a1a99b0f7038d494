"""One way to run a case: execute_case(), the one child-process entry point, and the run's stages.

A run is a short list of stages, as in nox's workflow.execute: select -> start exporting -> provision
-> probe -> route -> execute -> finish; `result.exit_code` decides the exit code in one place.

Each config's cases run in their own child process (`python -m q4gsw _child JOB.json`), so a driver
crash, device loss or hung kernel fails that config with its message and the run goes on. The
child enforces its own deadline and dies with its parent, so no kernel outlives the run; it is
started warm (imports, device) while the previous config runs. Fixtures a run must export are
exported by one long-lived export process (the torch/executorch imports are paid once), started
before the backend is probed and running beside the GPU work of earlier configs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from q4gsw.case import COMPILE_FAILURE, base_result, execute_case, load_problem, open_device, warm_up
from q4gsw.cases import Case, Selection, Skip, adapter_from_plain, case_from_plain, to_plain
from q4gsw.console import CLOCK_ENV, say
from q4gsw.console import last_lines as _last_lines
from q4gsw.matrix import Config
from q4gsw.result import Result, Shape, Timings
from q4gsw.sessions import reproduce_command
from q4gsw.values import AdapterInfo

SPARES_AHEAD = 4  # configs whose children start while one runs (each ~150 MB until its fixture)
CHILD_NICE_WHILE_EXPORTING = 5  # GPU children of a run that exports: the export process comes first
PARENT_ENV = "Q4GSW_PARENT_PID"  # the run's pid: a child whose parent is no longer it exits at once
VERBOSE_ENV = "Q4GSW_VERBOSE"
PROBE_TIMEOUT_S = 180


# ------------------------------------------------------------------------------------------------
# Executing one case (child process)
# ------------------------------------------------------------------------------------------------


def _die_with_parent(deadline_s: float) -> None:
    """SIGKILL when the parent dies (Linux), and SIGALRM's default action (terminate) at the deadline:
    both work while the process is blocked inside the driver, where Python handlers never run.

    PR_SET_PDEATHSIG fires when the thread that started this process exits; the engine starts children
    from the thread that then waits for them, so it fires when the run dies. The parent may die before
    the prctl (during this interpreter's start-up): then the parent pid is no longer the one the run
    recorded (the orphan is re-parented to init or a subreaper, not always pid 1), and this exits."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    expected = os.environ.get(PARENT_ENV, "")
    if os.getppid() == 1 or (expected.isdigit() and os.getppid() != int(expected)):  # the parent is already gone
        os._exit(137)
    _start_deadline(deadline_s)


def _start_deadline(deadline_s: float) -> None:
    if deadline_s > 0:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(min(max(1, math.ceil(deadline_s)), 2**31 - 1))  # alarm() takes whole seconds, an unsigned int


def child_main(job_path: Path) -> int:
    """`python -m q4gsw _child JOB.json`: run a config's cases on one device, writing Results as they finish.

    A job without "fixture" is a warm spare (engine.ConfigChild): it imports and opens its device first,
    then reads one line from stdin, `{"fixture": PATH or null}`, and only then starts its deadline; an
    empty stdin means its config will not run."""
    job = json.loads(job_path.read_text())
    spare = "fixture" not in job
    _die_with_parent(0 if spare else float(job["deadline_s"]))
    cases = [case_from_plain(c) for c in job["cases"]]
    out = Path(job["out"])
    results: list[Result] = []

    def flush() -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps([r.as_dict() for r in results], default=str))
        tmp.replace(out)

    device, failure = open_device(cases)
    if spare:
        if device is not None:
            warm_up(device, cases[0], Path(job["root"]))
        go = sys.stdin.readline()
        if not go.strip():
            return 0
        job.update(json.loads(go))
        _start_deadline(float(job["deadline_s"]))
    config = cases[0].config
    try:
        problem = load_problem(config, tuple(dict.fromkeys(c.input for c in cases)),
                               Path(job["fixture"]) if job["fixture"] else None, job.get("seed"))
    except Exception as exc:  # a bad fixture fails every case with its reason
        failure = failure or f"{type(exc).__name__}: {exc}"
    if failure:
        results.extend(base_result(c, "fail", failure) for c in cases)
        flush()
        return 0
    root = Path(job["root"])
    for case in cases:
        result = execute_case(case, device, problem, root, repeats=int(job.get("repeats", 1)))
        results.append(result)
        flush()
        rate = f", {result.timings.gflops:.2f} GFLOP/s" if result.timings.gflops else ""
        say(f"{case.kernel.name} / {case.input}: {result.status.upper()} {result.message}{rate}", "    ")
    flush()
    return 0


# ------------------------------------------------------------------------------------------------
# Child processes (parent side)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int
    timed_out: bool
    duration_s: float
    peak_rss_bytes: int
    log: str  # the child's stderr: library noise, kept for a failing config


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault(CLOCK_ENV, repr(time.time()))
    env[PARENT_ENV] = str(os.getpid())
    return env


def wait_child(proc: subprocess.Popen[bytes], err: Any, timeout_s: float) -> ChildOutcome:
    """Wait for a started child (stdout passed through, stderr into `err`), killed at timeout_s or on any error
    here (Ctrl-C included): no child, and no GPU work, outlives the wait."""
    started = time.perf_counter()
    timed_out = False
    rusage = None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - started > timeout_s:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.05)
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


def start_child(command: list[str], env: dict[str, str], err: Any, stdin: int | None = None) -> subprocess.Popen[bytes]:
    verbose = os.environ.get(VERBOSE_ENV) == "1"
    return subprocess.Popen(command, env=env, stdin=stdin, stdout=None, stderr=None if verbose else err,
                            start_new_session=True)


def describe_exit(outcome: ChildOutcome, what: str, timeout_s: float) -> str:
    if outcome.timed_out:
        return f"{what} timed out after {timeout_s:g} s (timeout_s in matrix.toml) and was killed"
    if outcome.returncode == -signal.SIGALRM:
        return f"{what} reached its own deadline of {timeout_s:g} s (timeout_s in matrix.toml) and was stopped"
    if outcome.returncode < 0:
        name = signal.Signals(-outcome.returncode).name
        return f"{what} crashed with {name}: {_last_lines(outcome.log)}"
    return f"{what} failed (exit {outcome.returncode}): {_last_lines(outcome.log)}"


# ------------------------------------------------------------------------------------------------
# Fixtures: one long-lived export process per run
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixtureSource:
    """Where a run's fixtures come from: a folder given with --fixtures, else the cache (exporting misses)."""

    fixtures: Path | None
    cache: Path
    matrix_path: Path


FixtureLookup = Callable[[Config], tuple[Path | None, str, float]]  # (path or None, failure, seconds waited)


class Exporter:
    """One `python -m q4gsw _export` process for every config a run needs, started before the backend is probed.

    It prints `READY name path` or `FAILED name message` lines; the parent takes them in order and
    runs each config's GPU work as soon as its fixture is ready. A config whose export exceeds its
    timeout_s kills the process; the next config starts a new one.
    """

    def __init__(self, source: FixtureSource, configs: list[Config], env: dict[str, str]) -> None:
        self.source = source
        self.env = env  # added to the export process's environment
        self.pending = [c for c in configs]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (lives as long as the exporter)

    def start(self) -> None:
        names = [c.name for c in self.pending]
        command = [sys.executable, "-m", "q4gsw", "_export", "--matrix", str(self.source.matrix_path),
                   "--cache", str(self.source.cache), *[a for n in names for a in ("--config", n)]]
        verbose = os.environ.get(VERBOSE_ENV) == "1"
        self.proc = subprocess.Popen(command, env=child_env(self.env), stdout=subprocess.PIPE, text=True,
                                     stderr=None if verbose else self.log, start_new_session=True)
        self.lines = queue.Queue()
        stream = self.proc.stdout
        assert stream is not None

        def pump() -> None:
            for line in stream:
                if line.startswith(("READY ", "FAILED ")):
                    self.lines.put(line)
                else:
                    print(line, end="", flush=True)  # the exporter's progress, in the order it happens
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, config: Config) -> tuple[Path | None, str, float]:
        """(fixture path or None, failure message, seconds spent waiting)."""
        if self.proc is None or (self.proc.poll() is not None and self.lines.empty()):
            self.pending = self.pending[self.pending.index(config):] if config in self.pending else [config]
            self.start()
        started = time.perf_counter()
        while True:
            left = config.timeout_s - (time.perf_counter() - started)
            try:
                line = self.lines.get(timeout=max(0.1, left))
            except queue.Empty:
                self.stop()
                return None, (f"export of '{config.name}' timed out after {config.timeout_s:g} s (timeout_s in "
                              "matrix.toml) and was killed"), time.perf_counter() - started
            if line is None:
                self.proc.wait() if self.proc else None
                self.log.seek(0)
                tail = _last_lines(self.log.read()[-8000:].decode(errors="replace"))
                self.proc = None
                return None, f"export of '{config.name}' failed: {tail}", time.perf_counter() - started
            if line.startswith(("READY ", "FAILED ")):
                kind, name, rest = line.rstrip("\n").split(" ", 2)
                if name != config.name:
                    continue
                if kind == "READY":
                    return Path(rest), "", time.perf_counter() - started
                return None, rest, time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None:
            kill_child(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()


def export_main(matrix_path: Path, names: list[str], cache: Path) -> int:
    """`python -m q4gsw _export --config A --config B ...`: ensure each fixture, one READY/FAILED line each."""
    from q4gsw.export import ensure_fixture, quiet_library_output
    from q4gsw.matrix import load_matrix

    _die_with_parent(0)
    quiet_library_output()
    matrix = load_matrix(matrix_path)
    for name in names:
        config = matrix.config(name)
        try:
            fixture = ensure_fixture(config, cache, lambda message: say(message, "    "))
        except Exception as exc:  # this config fails with the reason; the next one is still exported
            print(f"FAILED {name} export of '{name}' failed: {type(exc).__name__}: "
                  f"{' | '.join(str(exc).splitlines()[-3:])}", flush=True)
            continue
        print(f"READY {name} {fixture.path}", flush=True)
    return 0


def warm_main(prefix: str, folders: list[str]) -> int:
    """`python -m q4gsw _warm`: bytecode.warm_main, dying with its run."""
    from q4gsw.bytecode import warm_main as compile_folders

    _die_with_parent(0)
    return compile_folders(prefix, folders)


@contextlib.contextmanager
def fixture_provider(source: FixtureSource, configs: list[Config], env: dict[str, str]) -> Iterator[FixtureLookup]:
    from q4gsw.export import FixtureError, verify_fixture
    from q4gsw.pte import DelegateLayoutError

    if source.fixtures is not None:
        given = source.fixtures

        def from_folder(config: Config) -> tuple[Path | None, str, float]:
            from q4gsw.export import find_fixture

            try:
                path = find_fixture(given, config, source.cache)
                verify_fixture(path, config)
            except (FixtureError, OSError, ValueError, DelegateLayoutError) as exc:
                return None, (f"fixture for '{config.name}' rejected: {exc}. Re-export it with "
                              f"`python -m q4gsw export --out {given} --config {config.name}`"), 0.0
            return path, "", 0.0

        yield from_folder
        return
    exporter = Exporter(source, configs, env)
    if configs:
        exporter.start()  # now, not at the first lookup: exporting overlaps provisioning and probing
    try:
        yield exporter.wait_for
    finally:
        exporter.close()


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    fixtures: FixtureSource
    repeats: int = 1
    seed: int | None = None  # synthetic problems (bench) instead of fixtures

    @property
    def exports_into_cache(self) -> bool:
        """Fixtures come from the cache, exported there when missing (not `--fixtures DIR`, not bench's seed)."""
        return self.seed is None and self.fixtures.fixtures is None


def probe(selection: Selection, env: dict[str, str]) -> AdapterInfo:
    """Find the backend's adapter in a child (the ICD env must be set before wgpu loads); raise if absent."""
    from q4gsw.webgpu.adapter import BackendUnavailable

    backend = selection.backend
    command = [sys.executable, "-m", "q4gsw", "_probe", "--backend-json", json.dumps(to_plain(backend))]
    try:
        proc = subprocess.run(command, env=child_env(env), capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BackendUnavailable(f"enumerating adapters hung for {PROBE_TIMEOUT_S} s (driver problem?)") from exc
    if proc.returncode != 0:
        raise BackendUnavailable(_last_lines(proc.stderr, 1).removeprefix("error: "))
    return adapter_from_plain(json.loads(proc.stdout.strip().splitlines()[-1]))


def probe_main(backend_json: str) -> int:
    from q4gsw.cases import backend_from_plain
    from q4gsw.webgpu.adapter import BackendUnavailable, select_adapter

    _die_with_parent(PROBE_TIMEOUT_S)
    try:
        _, info = select_adapter(backend_from_plain(json.loads(backend_json)))
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(to_plain(info)))
    return 0


def skip_result(skip: Skip, selection: Selection) -> Result:
    c = skip.config
    return Result(config=c.name, backend=selection.backend.name, status=skip.status, message=skip.reason,
                  case_id=f"{c.name}{'/' + skip.kernel if skip.kernel else ''}@{selection.backend.name}",
                  webgpu=selection.backend.webgpu, tier=c.tier, suite=c.suite, kernel=skip.kernel,
                  shape=Shape(c.M, c.K, c.N, c.group_size),
                  reproduce=reproduce_command(c.name, selection.backend.name, c.tier, c.suite))


def config_failure(config: Config, selection: Selection, message: str, cases: tuple[Case, ...], **extra: Any) -> Result:
    """A config that failed before any of its cases could be judged (export, crash, timeout, no adapter)."""
    if cases:
        return base_result(cases[0], "fail", message, **extra)
    return replace(skip_result(Skip(config, message), selection), status="fail", **extra)


class ConfigChild:
    """One config's `_child`, started before its fixture is ready (a warm spare): it imports wgpu and opens its
    device while the export or the previous config runs. `finish(fixture)` hands it the fixture and starts its
    deadline; `cancel()` ends it unused. timeout_s is per kernel of the config: `--all-variants` or mutants run
    several kernels in one child."""

    def __init__(self, config: Config, selection: Selection, env: dict[str, str], options: RunOptions,
                 root: Path, nice: int = 0) -> None:
        self.config, self.env, self.root = config, env, root
        self.cases = selection.cases_of(config)
        self.deadline_s = config.timeout_s * max(1, len({c.kernel.name for c in self.cases}))
        self.tmp = tempfile.TemporaryDirectory(prefix="q4gsw-")
        self.out = Path(self.tmp.name) / "results.json"
        job = Path(self.tmp.name) / "job.json"
        job.write_text(json.dumps({"cases": [to_plain(c) for c in self.cases], "seed": options.seed,
                                   "out": str(self.out), "repeats": options.repeats, "root": str(root)}))
        self.err = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed by finish/cancel)
        self.proc = start_child([sys.executable, "-m", "q4gsw", "_child", str(job)], child_env(env), self.err,
                                stdin=subprocess.PIPE)
        if nice:
            from q4gsw.bytecode import renice

            renice(self.proc, nice)

    def finish(self, fixture: Path | None) -> list[Result]:
        try:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it died while starting: its exit status says why
                self.proc.stdin.write(json.dumps({"fixture": str(fixture) if fixture else None,
                                                  "deadline_s": self.deadline_s}).encode() + b"\n")
                self.proc.stdin.close()
            outcome = wait_child(self.proc, self.err, self.deadline_s)
            results = [Result.from_dict(r) for r in json.loads(self.out.read_text())] if self.out.is_file() else []
        finally:
            self.cancel()
        return self._completed(results, outcome)

    def _completed(self, results: list[Result], outcome: ChildOutcome) -> list[Result]:
        rss = outcome.peak_rss_bytes
        results = [replace(r, peak_rss_bytes=max(r.peak_rss_bytes, rss),
                           timings=replace(r.timings, total_s=outcome.duration_s),
                           log=outcome.log if r.status == "fail" else "") for r in results]
        results = [_with_other_compiler(r, self.cases, self.env, self.root) for r in results]
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
        self.tmp.cleanup()


def _with_other_compiler(result: Result, cases: tuple[Case, ...], env: dict[str, str], root: Path) -> Result:
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


def compile_main(job_json: str) -> int:
    """`python -m q4gsw _compile JOB`: does this implementation's compiler accept the case's kernel? (ok/rejected)"""
    from q4gsw.expressions import resolve_kernel
    from q4gsw.webgpu.adapter import select_adapter
    from q4gsw.webgpu.execute import Device, KernelCompileError

    job = json.loads(job_json)
    case = case_from_plain(job["case"])
    try:
        adapter, info = select_adapter(case.backend)
        constants, _ = resolve_kernel(case.kernel, case.config.shape_names(), info)
        features = tuple(f for f in case.kernel.requires_features if f in info.features)
        Device(adapter, info, features).pipeline(case.kernel.source(Path(job["root"])), constants, case.kernel.name)
    except KernelCompileError as exc:
        print(f"rejected: {_last_lines(str(exc), 2)}")
        return 0
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {_last_lines(str(exc), 2)}")
        return 0
    print("ok")
    return 0


def required_without_a_run(selection: Selection, results: list[Result]) -> list[Result]:
    """A required config none of whose cases executed fails: a run that checked nothing is not green."""
    failures = []
    for config in selection.configs:
        if config.tier != "required":
            continue
        mine = [r for r in results if r.config == config.name]
        if not any(r.status in ("pass", "fail") for r in mine):
            reasons = "; ".join(dict.fromkeys(r.message for r in mine)) or "no case was selected"
            failures.append(config_failure(config, selection, f"required config '{config.name}' ran no case on "
                                                              f"'{selection.backend.name}': {reasons}", ()))
    return failures


def _unusable_cache(options: RunOptions) -> str:
    """Why the fixture cache this run exports into cannot be used, or '' (also when the run needs no cache)."""
    from q4gsw.paths import CacheError, usable_directory

    if not options.exports_into_cache:
        return ""
    try:
        usable_directory(options.fixtures.cache, "cache")
    except CacheError as exc:
        return f"{exc} (nothing was exported or run)"
    return ""


def run_selection(selection: Selection, options: RunOptions, root: Path,
                  on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    """The run's stages: record skips -> start exporting -> provision -> probe -> route -> per config: fixture,
    execute -> finish. Exports start first: on a cold machine they are the longest stage."""
    results: list[Result] = []
    os.environ.setdefault(CLOCK_ENV, repr(time.time()))  # the run's one clock starts before provisioning

    def record(result: Result) -> None:
        results.append(result)
        on_result(result)

    for skip in selection.skipped:
        record(skip_result(skip, selection))
    unusable = _unusable_cache(options)
    if unusable:
        # A cache that cannot be used fails every selected config with one message; the results are still written.
        say(f"error: {unusable}")
        for config in selection.configs:
            record(config_failure(config, selection, unusable, selection.cases_of(config)))
        return results
    runnable = [c for c in selection.configs if selection.cases_of(c)]
    exporting = _must_export(options, runnable)
    if exporting:
        runnable = execution_order(runnable)
    with _bytecode_ahead(exporting, bool(runnable)) as (first_fixture_in, bytecode_env), \
            fixture_provider(options.fixtures, runnable, bytecode_env) if options.seed is None else \
            contextlib.nullcontext(lambda c: (None, "", 0.0)) as fixture_for:
        opened = _open_backend(selection, record, bytecode_env)
        if opened is not None:
            env, selection = opened

            def fixture_then(config: Config) -> tuple[Path | None, str, float]:
                found = fixture_for(config)
                first_fixture_in()
                return found

            # bench (synthetic problems) times kernels: one spare at a time, as little beside the timed work as before
            _execute_configs(selection, runnable, fixture_then, env, options, root, record,
                             child_nice=CHILD_NICE_WHILE_EXPORTING if exporting else 0,
                             spares_ahead=1 if options.seed is not None else SPARES_AHEAD)
    for failure in required_without_a_run(selection, results):
        record(failure)
    return in_matrix_order(results, selection)


def _must_export(options: RunOptions, runnable: list[Config]) -> bool:
    from q4gsw.export import fixture_dir

    return options.exports_into_cache and any(not fixture_dir(options.fixtures.cache, c).exists() for c in runnable)


def execution_order(configs: list[Config]) -> list[Config]:
    """The most GPU work first (M*K*N; ties keep the matrix order), for runs that export: the exports of the other
    configs then run beside the longest GPU job instead of the run ending on it after every export is done.
    Runs whose fixtures all exist keep the matrix order."""
    return sorted(configs, key=lambda c: -c.M * c.K * c.N)


def in_matrix_order(results: list[Result], selection: Selection) -> list[Result]:
    """Results as the matrix lists their configs (skips recorded before the run first), whatever ran first."""
    position = {c.name: i for i, c in enumerate(selection.configs)}
    return sorted(results, key=lambda r: position.get(r.config, -1))


@contextlib.contextmanager
def _bytecode_ahead(exporting: bool, anything_to_run: bool) -> Iterator[tuple[Callable[[], None], dict[str, str]]]:
    """Children read bytecode a niced helper compiles ahead (see q4gsw.bytecode). Yields what to call once the
    first fixture is in (the helper then only uses CPU nothing else wants) and what to add to every child's
    environment; this process's own environment is left alone (runs may share it, e.g. in tests' threads)."""
    from q4gsw import bytecode
    from q4gsw.paths import cache_root

    ahead = bytecode.plan(cache_root(), exporting) if anything_to_run else None
    if ahead is None:
        yield (lambda: None), {}
        return
    helper = bytecode.start_warming(ahead, child_env({}))
    try:
        yield (lambda: bytecode.renice(helper, bytecode.IDLE_NICE)), ahead.child_env()
    finally:
        bytecode.stop_warming(helper)


def _open_backend(selection: Selection, record: Callable[[Result], None],
                  extra_env: dict[str, str]) -> tuple[dict[str, str], Selection] | None:
    """Provision and probe the backend, then route: (the children's environment: the ICD's and extra_env, routed
    selection), or None when the backend is unavailable (every selected config then fails with why; a required
    config never turns into a skip)."""
    from q4gsw.webgpu.adapter import BackendUnavailable
    from q4gsw.webgpu.provision import provision

    backend = selection.backend
    try:
        env = {**provision(backend), **extra_env}
        adapter = probe(selection, env)
    except BackendUnavailable as exc:
        say(f"error: backend '{backend.name}' unavailable: {exc}")
        for config in selection.configs:
            record(config_failure(config, selection, f"backend '{backend.name}' unavailable: {exc}",
                                  selection.cases_of(config)))
        return None
    say(f"backend {backend.name}: {adapter.describe()}")
    if selection.route:
        before = len(selection.skipped)
        selection = selection.routed(adapter)
        for skip in selection.skipped[before:]:
            record(skip_result(skip, selection))
        for config in selection.configs:
            routed = next((c.routed for c in selection.cases_of(config)), "")
            if routed:
                say(f"route: {config.name} -> {routed}")
    return env, selection


def _execute_configs(selection: Selection, runnable: list[Config], fixture_for: FixtureLookup, env: dict[str, str],
                     options: RunOptions, root: Path, record: Callable[[Result], None], child_nice: int = 0,
                     spares_ahead: int = SPARES_AHEAD) -> None:
    """Each config in its own child. Once a config's fixture is in, the children of the next spares_ahead configs
    start (import, open their device, build their first pipeline) while it runs: a config that is done in
    a fraction of a second (M = 1 on a warm device) does not leave the next one starting from nothing.
    child_nice > 0 (a run that exports): the children yield the CPU to the export process, whose fixtures every
    later config waits for."""
    runnable = [c for c in runnable if selection.cases_of(c)]  # routing may have left a config nothing to run
    started: dict[int, ConfigChild] = {}  # by index in runnable: the current config's child and the spares

    def start(index: int) -> ConfigChild:
        if index not in started:
            started[index] = ConfigChild(runnable[index], selection, env, options, root, child_nice)
        return started[index]

    try:
        for index, config in enumerate(runnable):
            say(f"({index + 1}/{len(runnable)}) {config.name} {config.M}x{config.K}x{config.N} gs={config.group_size} "
                f"[{config.tier}] on {selection.backend.name}")
            child = start(index)
            fixture, problem, waited = fixture_for(config)
            if problem:
                started.pop(index).cancel()
                record(config_failure(config, selection, problem, selection.cases_of(config),
                                      timings=Timings(export_s=waited)))
                continue
            for ahead in range(index + 1, min(index + 1 + spares_ahead, len(runnable))):
                start(ahead)
            results = child.finish(fixture)
            del started[index]
            for result in results:
                record(replace(result, timings=replace(result.timings, export_s=waited or None)))
    finally:  # Ctrl-C or an error here: no child outlives the run
        for leftover in started.values():
            leftover.cancel()
