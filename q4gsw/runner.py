"""Orchestrates a run: fixtures, then one child process per config for GPU execution and comparison.

Each config runs in its own process so a driver crash, a device loss or a hung kernel fails that
config (with its message) and the run goes on; the parent never loads wgpu itself, which also keeps
the Vulkan ICD chosen by provisioning in force for every child.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from q4gsw import __version__
from q4gsw.matrix import Backend, Config, Matrix
from q4gsw.result import Result

HEAVY_HINT = "heavy: run `nox -s heavy`"


@dataclass(frozen=True)
class UserKernel:
    """A kernel given on the command line (`check`) instead of the ones declared in matrix.toml."""

    file: str
    dispatch: str
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    backend: str
    configs: tuple[Config, ...]
    skipped: tuple[tuple[Config, str], ...]
    fixtures: Path | None
    cache: Path
    results_dir: Path
    user_kernel: UserKernel | None = None
    session_name: str = ""


@dataclass
class ChildOutcome:
    returncode: int
    timed_out: bool
    duration_s: float
    peak_rss_bytes: int
    stderr_tail: str


def _elapsed_printer(prefix: str) -> Callable[[str], None]:
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {prefix}{message}", flush=True)

    return say


def run_child(command: list[str], env: dict[str, str], timeout_s: float) -> ChildOutcome:
    """Run a child with stdout passed through (live progress) and stderr kept for the failure message."""
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+b") as err:
        proc = subprocess.Popen(command, env=env, stdout=None, stderr=err, start_new_session=True)
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
            # Ctrl-C or any error in the parent: never leave the child (and its GPU work) running.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except (ProcessLookupError, ChildProcessError):
                pass
            raise
        err.seek(0)
        tail = err.read()[-4000:].decode(errors="replace")
    peak = int(rusage.ru_maxrss) * 1024 if rusage is not None else 0
    return ChildOutcome(returncode=proc.returncode, timed_out=timed_out, duration_s=time.perf_counter() - started,
                        peak_rss_bytes=peak, stderr_tail=tail)


def reproduce_command(config: Config, backend: str, user_kernel: UserKernel | None) -> str:
    if user_kernel is not None:
        overrides = "".join(f" --override {k}={v}" for k, v in user_kernel.overrides.items())
        return (f"python -m q4gsw check --kernel {user_kernel.file} --dispatch \"{user_kernel.dispatch}\"{overrides} "
                f"--backend {backend} --config {config.name}")
    if config.tier == "heavy":
        return f"nox -s heavy -- --backend {backend} --config {config.name}"
    if config.suite != "llama":
        return f"nox -s accuracy-{config.suite}-{backend} -- --config {config.name}"
    return f"nox -s accuracy-{backend} -- --config {config.name}"


def _failure(config: Config, backend: str, message: str, options: RunOptions, **extra: Any) -> Result:
    return Result(config=config.name, backend=backend, status="fail", message=message, tier=config.tier,
                  suite=config.suite, shape={"M": config.M, "K": config.K, "N": config.N,
                                             "group_size": config.group_size},
                  reproduce=reproduce_command(config, backend, options.user_kernel), **extra)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _describe_exit(outcome: ChildOutcome, what: str, timeout_s: float) -> str:
    if outcome.timed_out:
        return f"{what} timed out after {timeout_s:g} s (timeout_s in matrix.toml) and was killed"
    if outcome.returncode < 0:
        name = signal.Signals(-outcome.returncode).name
        return f"{what} crashed with {name}: {_last_lines(outcome.stderr_tail)}"
    return f"{what} failed (exit {outcome.returncode}): {_last_lines(outcome.stderr_tail)}"


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and "XDG_RUNTIME_DIR" not in line]
    return " | ".join(lines[-count:]) if lines else "(no output)"


def prepare_fixture(config: Config, options: RunOptions,
                    matrix: Matrix) -> tuple[Path | None, str, float, int]:
    """(fixture path, failure message, export seconds, export peak RSS). Exports in a child on a cache miss."""
    from q4gsw.export import FixtureError, fixture_dir, verify_fixture

    if options.fixtures is not None:
        path = options.fixtures / config.name
        try:
            verify_fixture(path, config)
        except FixtureError as exc:
            return None, (f"fixture for '{config.name}' rejected: {exc}. Re-export it with "
                          f"`python -m q4gsw export --out {options.fixtures} --config {config.name}`"), 0.0, 0
        return path, "", 0.0, 0
    path = fixture_dir(options.cache, config)
    command = [sys.executable, "-m", "q4gsw", "_export", "--matrix", str(matrix.path), "--config", config.name,
               "--cache", str(options.cache)]
    outcome = run_child(command, _child_env({}), config.timeout_s)
    if outcome.returncode != 0:
        message = _describe_exit(outcome, f"export of '{config.name}'", config.timeout_s)
        return None, message, outcome.duration_s, outcome.peak_rss_bytes
    return path, "", outcome.duration_s, outcome.peak_rss_bytes


def execute_config(config: Config, backend: Backend, fixture: Path, options: RunOptions, matrix: Matrix,
                   env: dict[str, str]) -> tuple[list[Result], ChildOutcome]:
    with tempfile.TemporaryDirectory(prefix="q4gsw-") as tmp:
        out = Path(tmp) / "results.json"
        command = [sys.executable, "-m", "q4gsw", "_execute", "--matrix", str(matrix.path), "--config", config.name,
                   "--backend", backend.name, "--fixture", str(fixture), "--out", str(out)]
        if options.user_kernel is not None:
            command += ["--kernel-file", options.user_kernel.file, "--dispatch", options.user_kernel.dispatch]
            for key, value in options.user_kernel.overrides.items():
                command += ["--override", f"{key}={value}"]
        outcome = run_child(command, _child_env(env), config.timeout_s)
        results = []
        if out.is_file():
            results = [Result.from_dict(r) for r in json.loads(out.read_text())]
        return results, outcome


def run(matrix: Matrix, options: RunOptions,
        on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
    """Run every selected config; KeyboardInterrupt propagates after partial results are kept in `results`."""
    from q4gsw.gpu import BackendUnavailable, provision

    backend = matrix.backend(options.backend)
    results: list[Result] = []

    def record(result: Result) -> None:
        results.append(result)
        on_result(result)

    for config, reason in options.skipped:
        record(Result(config=config.name, backend=backend.name, status="skip", message=reason, tier=config.tier,
                      suite=config.suite, shape={"M": config.M, "K": config.K, "N": config.N,
                                                 "group_size": config.group_size},
                      reproduce=reproduce_command(config, backend.name, options.user_kernel)))
    say = _elapsed_printer("")
    try:
        env = provision(backend)
        adapter = probe_adapter(matrix, backend, env)
    except BackendUnavailable as exc:
        # Stop before exporting anything: every selected config fails (required never turns into skip).
        print(f"error: backend '{backend.name}' unavailable: {exc}", file=sys.stderr, flush=True)
        for config in options.configs:
            record(_failure(config, backend.name, f"backend '{backend.name}' unavailable: {exc}", options))
        return results
    say(f"backend {backend.name}: {adapter['name']} ({adapter['device_type']}, {adapter['api']}, "
        f"driver {adapter['driver'] or 'n/a'})")
    for index, config in enumerate(options.configs, start=1):
        say(f"({index}/{len(options.configs)}) {config.name} {config.M}x{config.K}x{config.N} "
            f"gs={config.group_size} [{config.tier}] on {backend.name}")
        fixture, problem, export_s, export_rss = prepare_fixture(config, options, matrix)
        if fixture is None:
            record(_failure(config, backend.name, problem, options, timings={"export_s": export_s},
                            peak_rss_bytes=export_rss))
            continue
        config_results, outcome = execute_config(config, backend, fixture, options, matrix, env)
        if outcome.returncode != 0 or not config_results:
            message = _describe_exit(outcome, f"GPU run of '{config.name}'", config.timeout_s)
            config_results.append(_failure(config, backend.name, message, options,
                                           timings={"export_s": export_s, "total_s": outcome.duration_s},
                                           peak_rss_bytes=max(export_rss, outcome.peak_rss_bytes)))
        for result in config_results:
            timings = {**result.timings, "export_s": export_s, "total_s": outcome.duration_s + export_s}
            record(Result.from_dict({**result.as_dict(), "timings": timings,
                                     "peak_rss_bytes": max(result.peak_rss_bytes, outcome.peak_rss_bytes,
                                                           export_rss)}))
    return results


def probe_adapter(matrix: Matrix, backend: Backend, env: dict[str, str]) -> dict[str, Any]:
    """Find the backend's adapter in a child (the ICD env must be set before wgpu loads); raise if absent."""
    from q4gsw.gpu import BackendUnavailable

    command = [sys.executable, "-m", "q4gsw", "_probe", "--matrix", str(matrix.path), "--backend", backend.name]
    try:
        proc = subprocess.run(command, env=_child_env(env), capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        raise BackendUnavailable("enumerating adapters hung for 180 s (driver problem?)") from exc
    if proc.returncode != 0:
        raise BackendUnavailable(_last_lines(proc.stderr, 1).removeprefix("error: "))
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# Child-process entry points (python -m q4gsw _probe / _export / _execute)
# ------------------------------------------------------------------------------------------------


def probe_entry(matrix: Matrix, backend_name: str) -> int:
    from q4gsw.gpu import BackendUnavailable, select_adapter

    try:
        _, info = select_adapter(matrix.backend(backend_name))
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(info.as_dict()))
    return 0


def export_entry(matrix: Matrix, config_name: str, cache: Path) -> int:
    from q4gsw.export import ensure_fixture

    config = matrix.config(config_name)
    ensure_fixture(config, cache, _elapsed_printer("    "))
    return 0


def execute_entry(matrix: Matrix, config_name: str, backend_name: str, fixture_path: Path, out: Path,
                  user_kernel: UserKernel | None) -> int:
    """Run every applicable kernel x input of one config on the backend; write Results as JSON."""
    import hashlib

    import numpy as np

    from q4gsw import gpu, inputs
    from q4gsw.compare import compare
    from q4gsw.export import package_version, package_versions, verify_fixture
    from q4gsw.golden import golden
    from q4gsw.histogram import error_histogram
    from q4gsw.matrix import Kernel, split_dispatch

    say = _elapsed_printer("    ")
    config = matrix.config(config_name)
    backend = matrix.backend(backend_name)
    results: list[Result] = []
    base = {"config": config.name, "backend": backend.name, "tier": config.tier, "suite": config.suite,
            "shape": {"M": config.M, "K": config.K, "N": config.N, "group_size": config.group_size},
            "reproduce": reproduce_command(config, backend.name, user_kernel),
            "versions": {"q4gsw": __version__, **package_versions(), "wgpu": package_version("wgpu"),
                         "numpy": np.__version__}}

    def flush() -> None:
        out.write_text(json.dumps([r.as_dict() for r in results], default=str))

    timings: dict[str, float] = {}
    started = time.perf_counter()
    fixture = verify_fixture(fixture_path, config)
    packed = fixture.packed_linear()
    timings["unpack_s"] = time.perf_counter() - started
    # How long building this fixture took (export, .pte unpack, fp64 golden), even when it came from the cache.
    timings.update({f"fixture_{k}": v for k, v in fixture.manifest.get("timings", {}).items()})
    base["fixture"] = fixture.manifest.get("key", str(fixture_path))

    adapter, info = gpu.select_adapter(backend)
    say(f"adapter: {info.name} ({info.device_type}, {info.api}, driver {info.driver or 'n/a'})")
    base["adapter"] = info.as_dict()
    if user_kernel is not None:
        overrides: dict[str, str | int | float] = dict(user_kernel.overrides)
        kernels = [Kernel(name=Path(user_kernel.file).stem, file=str(Path(user_kernel.file).resolve()), when="1",
                          dispatch=split_dispatch(user_kernel.dispatch), overrides=overrides, requires_features=(),
                          requires_limits={}, tolerance=None, backends=None)]
    else:
        kernels = gpu.applicable_kernels(matrix.kernels, config, backend)
    if not kernels:
        results.append(Result(**base, status="unsupported", message="no kernel in matrix.toml applies to this shape"))
        flush()
        return 0
    wanted_features = tuple(sorted({f for k in kernels for f in k.requires_features}))
    if user_kernel is not None:
        # A kernel from the command line declares no needs: offer it the optional shader features the
        # adapter has, so `enable f16;` or subgroup builtins compile where the hardware allows them.
        wanted_features = tuple(f for f in gpu.OPTIONAL_SHADER_FEATURES if f in info.features)
    session = gpu.Session(adapter, info, wanted_features)
    for input_name in config.inputs:
        x = inputs.make_input(input_name, config.M, config.K, config.weight_seed)
        recorded_sha = fixture.manifest.get("input_sha256", {}).get(input_name)
        if recorded_sha and hashlib.sha256(x.tobytes()).hexdigest() != recorded_sha:
            raise RuntimeError(f"input '{input_name}' regenerated here differs from the one the fixture's golden "
                               "was computed from (numpy version change?); re-export the fixture")
        started = time.perf_counter()
        g = fixture.golden(input_name)
        if g is None:
            say(f"golden for '{input_name}' not in fixture: computing it in fp64")
            g = golden(x, packed, progress=lambda done, total: None)
        timings["golden_s"] = time.perf_counter() - started
        for kernel in kernels:
            tolerance = matrix.tolerance_for(config, backend, kernel)
            record = {**base, "kernel": kernel.name, "input": input_name,
                      "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol,
                                    "justification": tolerance.justification, "source": tolerance.source},
                      "seeds": {"weight_seed": config.weight_seed, "weights": config.weights,
                                "input_seed": config.weight_seed, "input": input_name}}
            try:
                constants, workgroups = gpu.resolve_kernel(kernel, config.shape_names(), info)
            except gpu.KernelUnsupported as exc:
                # A matrix kernel the adapter cannot run is unsupported; a kernel given to `check` that cannot
                # be dispatched for this shape (e.g. 0 or too many workgroups) fails: the user asked for it.
                results.append(Result(**record, status="fail" if user_kernel is not None else "unsupported",
                                      message=str(exc)))
                flush()
                continue
            source = kernel.path(matrix.root).read_text()
            say(f"{kernel.name} / {input_name}: dispatch {workgroups} overrides {constants}")
            try:
                run = session.run(source, kernel.name, constants, workgroups, x, packed)
            except Exception as exc:  # a compile error, OOM or device loss fails this kernel, not the run
                results.append(Result(**record, status="fail",
                                      message=f"kernel '{kernel.name}' failed on {info.name}: "
                                              f"{type(exc).__name__}: {_last_lines(str(exc), 6)}"))
                say(f"{kernel.name} / {input_name}: FAIL {results[-1].message}")
                flush()
                continue
            started = time.perf_counter()
            comparison = compare(run.output, g, tolerance)
            compare_s = time.perf_counter() - started
            status = "pass" if comparison.passed and not run.guard_violations else "fail"
            message = comparison.message
            if run.guard_violations:
                message = (f"out-of-bounds write: {len(run.guard_violations)} guard words changed, first at byte "
                           f"offset {run.guard_violations[0]} from the output start; " + message)
            errors = {"max_abs": comparison.max_abs_error, "max_rel": comparison.max_rel_error,
                      "worst_index": list(comparison.worst_index), "mismatches": comparison.mismatches,
                      "elements": comparison.elements, "nmse": comparison.nmse, "headroom": comparison.headroom,
                      "nonfinite": comparison.nonfinite,
                      "first_nonfinite": list(comparison.first_nonfinite) if comparison.first_nonfinite else None,
                      "guard_violations": len(run.guard_violations),
                      "histogram": error_histogram(run.output, g)}  # |y-g| over log10 bins, for the plots
            gpu_s = run.gpu_s if run.gpu_s is not None else run.wall_s
            result_timings = {**timings, "gpu_s": gpu_s, "gpu_wall_s": run.wall_s, "compare_s": compare_s,
                              "gflops": config.flops / gpu_s / 1e9 if gpu_s > 0 else 0.0}
            results.append(Result(**record, status=status, message=message, errors=errors, timings=result_timings,
                                  peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
            say(f"{kernel.name} / {input_name}: {status.upper()} {message} (gpu {gpu_s:.2f} s, "
                f"{result_timings['gflops']:.2f} GFLOP/s)")
            flush()
    flush()
    return 0
