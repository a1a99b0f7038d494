"""One case, executed and judged: execute_case() is the one place a case becomes a Result.

A case runs on an open device (open_device) against a Problem (load_problem: the fixture's weights,
inputs and fp64 goldens). execute_config() runs a config's cases that way: q4gsw/run/ calls it in a
child process per config, and `run --in-process` in the calling process.
"""

from __future__ import annotations

import contextlib
import hashlib
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from q4gsw import __version__
from q4gsw.cases import Case
from q4gsw.console import last_lines as _last_lines
from q4gsw.console import say
from q4gsw.matrix.values import Config
from q4gsw.ops import expression_names, op_for
from q4gsw.ops.base import Bindings
from q4gsw.report.result import Provenance, Result, Timings, shape_of
from q4gsw.sessions import reproduce_command

COMPILE_FAILURE = "kernel rejected"
# The lent H200 needs ~0.4 s of back-to-back Vulkan compute to raise its SM clock from 345 to 1980 MHz
# (docs/kernels.md, "Speed").
GPU_WARMUP_S = 1.0


@dataclass(frozen=True)
class Problem:
    """What a case computes on: the op's constants (as its kernels bind them) and, per input, x and the fp64 golden."""

    constants: Any
    x: dict[str, np.ndarray]
    golden: dict[str, np.ndarray]
    fixture_key: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def base_result(case: Case, status: str, message: str, **extra: Any) -> Result:
    """A Result carrying everything the case itself says (used for pass, fail, skip and unsupported)."""
    c = case.config
    return Result(config=c.name, backend=case.backend.name, status=status, message=message, case_id=case.id,
                  webgpu=case.backend.webgpu, tier=c.tier, suite=c.suite, op=c.op, kernel=case.kernel.name,
                  input=case.input, role=case.role, routed=case.routed, shape=shape_of(c),
                  tolerance=case.tolerance, reproduce=reproduce_for(case), drift_factor=c.drift_factor, **extra)


def reproduce_for(case: Case) -> str:
    kernel = case.kernel
    c = case.config
    if case.role == "subject" and kernel.origin.startswith("check:"):
        args = ["check", "--kernel", kernel.file, "--dispatch", ", ".join(kernel.dispatch)]
        for name, value in kernel.overrides.items():
            args += ["--override", f"{name}={value}"]
        return reproduce_command(c.name, case.backend.name, c.tier, c.suite, args, case.rerun)
    if kernel.origin.startswith("executorch:"):
        args = ["run", "--executorch", kernel.origin.split(":", 2)[1], "--all-variants"]
        return reproduce_command(c.name, case.backend.name, c.tier, c.suite, args, case.rerun)
    return reproduce_command(c.name, case.backend.name, c.tier, c.suite, rerun=case.rerun)


def upstream_verdict(y: np.ndarray, g: np.ndarray, case: Case) -> str:
    """The kernel's own project's verdict (abs OR rel, rel over max(|g|, 1e-6)), shown beside q4gsw's."""
    bound = case.config.upstream_tolerance
    if bound is None:
        return ""
    diff = np.abs(y.astype(np.float64) - g)
    ok = (diff <= bound.atol) | (diff / np.maximum(np.abs(g), 1e-6) <= bound.rtol)
    bad = int(np.count_nonzero(~ok))
    return "pass" if bad == 0 else f"fail ({bad} elements beyond atol {bound.atol:g} or rtol {bound.rtol:g})"


def execute_case(case: Case, device: Any, problem: Problem, root: Path, repeats: int = 1,
                 warmup_s: float | None = None, batch: int = 1) -> Result:
    """Run one case on an open device and compare it with its golden: the one place a case is judged. With
    repeats > 1 (bench) the kernel is then timed: `warmup_s` of back-to-back load first (None: warmup_for), then
    the repeats, `batch` of them per submit (Device.run; 1: each alone)."""
    from q4gsw.compare import compare
    from q4gsw.matrix.expressions import KernelUnsupported, resolve_kernel
    from q4gsw.report.histogram import error_histogram
    from q4gsw.webgpu.execute import COMPILERS, KernelCompileError, adapt_source

    info = device.info
    op = op_for(case.config)
    source = case.kernel.source(root)
    provenance = Provenance(fixture=problem.fixture_key, weights=case.config.weights,
                            weight_seed=case.config.weight_seed, input=case.input, kernel_source=case.kernel.origin,
                            source_notes=case.kernel.notes + adapt_source(source, info.webgpu)[1],
                            versions=_versions())
    common = {"adapter": info, "provenance": provenance}
    try:
        overrides, workgroups = resolve_kernel(case.kernel, expression_names(case.config), info)
    except KernelUnsupported as exc:
        # A kernel the user named explicitly (check) that cannot be dispatched fails: they asked for it.
        status = "fail" if case.kernel.origin.startswith("check:") else "unsupported"
        return base_result(case, status, str(exc), **common)
    x = problem.x[case.input]
    try:
        before = chain_dispatches(case.kernel, case.config, info, x, problem.constants, root)
    except KernelUnsupported as exc:
        return base_result(case, "fail" if case.kernel.origin.startswith("check:") else "unsupported", str(exc),
                           **common)
    bindings = op.kernel_bindings(case.kernel.stage, x, problem.constants, chained=bool(before))
    if bindings.output_index is None:  # a stage that writes no output: nothing to compare (Device.run asserted)
        return base_result(case, "fail", f"kernel '{case.kernel.name}' is stage '{case.kernel.stage}' of op "
                           f"'{case.config.op}', which writes no output to compare: give it the stage that writes the "
                           "op's output in matrix.toml, or dispatch it in a [[before]] chain", **common)
    try:
        for step in before:
            device.pipeline(step.source, step.overrides, step.label, step.bindings)
        device.pipeline(source, overrides, case.kernel.name, bindings)
    except KernelCompileError as exc:
        return base_result(case, "fail", f"{COMPILE_FAILURE} by {COMPILERS[info.webgpu]} on {info.name}: "
                                         f"{_last_lines(str(exc), 8)}", **common)
    try:
        run = device.run(source, case.kernel.name, overrides, workgroups, bindings, before=before)
        timed_s, how, samples, warmed_s = _time_dispatches(device, run, source, case, overrides, workgroups,
                                                           bindings, repeats, before, warmup_s, batch)
    except Exception as exc:  # OOM or device loss fails this case, not the run
        return base_result(case, "fail", f"kernel '{case.kernel.name}' failed on {info.name} through {info.webgpu}: "
                                         f"{type(exc).__name__}: {_last_lines(str(exc), 8)}",
                           workgroups=(), **common)
    g = problem.golden[case.input]
    started = time.perf_counter()
    comparison = compare(run.output, g, case.tolerance)
    compare_s = time.perf_counter() - started
    message = comparison.message
    if run.guard_violations:
        message = (f"out-of-bounds write: {len(run.guard_violations)} guard words changed, first at byte offset "
                   f"{run.guard_violations[0]} from the output start; {message}")
    errors = replace(comparison.errors, guard_violations=len(run.guard_violations),
                     histogram=error_histogram(run.output, g))
    gpu_s = timed_s
    timings = Timings(unpack_s=problem.timings.get("unpack_s"), golden_s=problem.timings.get("golden_s"),
                      gpu_s=gpu_s, gpu_wall_s=run.wall_s, gpu_timing=how, gpu_samples_s=samples, compare_s=compare_s,
                      gpu_warmup_s=warmed_s,
                      gflops=op.flops(case.config) / gpu_s / 1e9 if gpu_s else None,
                      fixture_export_s=problem.timings.get("fixture_export_s"),
                      fixture_golden_s=problem.timings.get("fixture_golden_s"))
    passed = comparison.passed and not run.guard_violations
    if case.kernel.notes:
        message += "; note: " + "; ".join(case.kernel.notes)
    return base_result(case, "pass" if passed else "fail", message, errors=errors, timings=timings,
                       workgroups=tuple(run.workgroups), upstream=upstream_verdict(run.output, g, case),
                       peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **common)


def chain_dispatches(kernel: Any, config: Config, info: Any, x: np.ndarray, constants: Any,
                     root: Path) -> tuple[Any, ...]:
    """The dispatches of the kernel's chain before it (Kernel.chain(), first first), each resolved for the config on
    this adapter and bound by its stage (Op.stage_bindings) or, unstaged, as the op's `before` (before_bindings).
    Raises KernelUnsupported naming the kernel of the chain that cannot run."""
    from q4gsw.matrix.expressions import KernelUnsupported, resolve_kernel
    from q4gsw.webgpu.execute import Dispatch

    op = op_for(config)
    steps = []
    for first in kernel.chain():
        try:
            overrides, workgroups = resolve_kernel(first, expression_names(config), info)
        except KernelUnsupported as exc:
            raise KernelUnsupported(f"the kernel it runs after, {first.name}: {exc}") from None
        bindings = op.stage_bindings(first.stage, x, constants) if first.stage else op.before_bindings(x, constants)
        steps.append(Dispatch(first.source(root), first.name, overrides, workgroups, bindings))
    return tuple(steps)


def warmup_for(is_cpu: bool, asked: float | None) -> float:
    """Seconds of back-to-back load before a kernel is timed: as asked, else GPU_WARMUP_S on a GPU and none on a
    CPU adapter (SwiftShader, lavapipe: no clock ramp worth a second per kernel)."""
    if asked is not None:
        return max(0.0, asked)
    return 0.0 if is_cpu else GPU_WARMUP_S


def _time_dispatches(device: Any, first: Any, source: str, case: Case, overrides: dict[str, Any],
                     workgroups: tuple[int, ...], bindings: Bindings, repeats: int, before: tuple[Any, ...] = (),
                     warmup_s: float | None = None,
                     batch: int = 1) -> tuple[float | None, str, tuple[float, ...], float | None]:
    """(seconds per dispatch or None, how, the seconds of each repeat, warm-up seconds or None): the best of
    `repeats` timestamp-query times where the adapter has them, else the best wall time of `repeats` dispatches
    after the first (which includes pipeline creation), each after the warm-up (warmup_for); one dispatch
    (repeats <= 1) is timed by the first's wall time alone, cold."""
    if repeats <= 1:
        if device.timestamps:
            # Timestamps that read zero (Dawn quantizes them; some drivers wrap) are no measurement: say so.
            return (first.gpu_s, "gpu", (), None) if first.gpu_s else (None, "unmeasured", (), None)
        return first.wall_s, "wall", (), None
    timed = device.run(source, case.kernel.name, overrides, workgroups, bindings, repeats=repeats, before=before,
                       warmup_s=warmup_for(device.info.is_cpu, warmup_s), batch=batch)
    samples = tuple(timed.gpu_samples)
    if not samples:
        return None, "unmeasured", (), timed.warmup_s
    return min(samples), "gpu" if device.timestamps else "wall", samples, timed.warmup_s


def _versions() -> dict[str, str]:
    from q4gsw.export.fixtures import package_version, package_versions

    return {"q4gsw": __version__, **package_versions(), "wgpu": package_version("wgpu"),
            "wgpudawn": package_version("wgpudawn"), "numpy": np.__version__}


def load_problem(config: Config, inputs_wanted: tuple[str, ...], fixture: Path | None, seed: int | None) -> Problem:
    """The fixture's weights and goldens (checked against their sha256), or a synthetic problem (bench)."""
    op = op_for(config)
    started = time.perf_counter()
    if fixture is None:
        constants = op.synthetic_constants(config, seed or 0)
        x = op.make_input(op.synthetic_input, replace(config, weight_seed=seed or 0))
        xs = dict.fromkeys(inputs_wanted, x)
        return Problem(constants=constants, x=xs, golden={name: op.golden(x, constants) for name in xs},
                       timings={"golden_s": time.perf_counter() - started})
    from q4gsw.export.fixtures import verify_fixture

    loaded = verify_fixture(fixture, config)
    constants = loaded.constants(config)
    timings = {"unpack_s": time.perf_counter() - started}
    timings.update({f"fixture_{k}": v for k, v in loaded.manifest.get("timings", {}).items()})
    xs, goldens = {}, {}
    started = time.perf_counter()
    for name in inputs_wanted:
        x = op.make_input(name, config)
        recorded = loaded.manifest.get("input_sha256", {}).get(name)
        if recorded and hashlib.sha256(x.tobytes()).hexdigest() != recorded:
            raise RuntimeError(f"input '{name}' regenerated here differs from the one the fixture's golden was "
                               "computed from (numpy version change?); re-export the fixture")
        stored = loaded.golden(name)
        if stored is None:
            say(f"golden for '{name}' not in the fixture: computing it in fp64", "    ")
        xs[name], goldens[name] = x, stored if stored is not None else op.golden(x, constants)
    timings["golden_s"] = time.perf_counter() - started
    return Problem(constants=constants, x=xs, golden=goldens, fixture_key=str(loaded.manifest.get("key", fixture)),
                   timings=timings)


def open_device(cases: list[Case], opened: dict[tuple[str, ...], Any] | None = None) -> tuple[Any, str]:
    """(Device, '') or (None, why): the adapter the cases' backend names, with the features their kernels need.

    `opened` (a `run --in-process`'s devices by feature set) reuses a device opened earlier with exactly these
    features, as a child reuses its device for every case of its config: each pipeline is then compiled once per
    run, not once per config (SwiftShader takes ~10 CPU s for some subgroup kernels)."""
    from q4gsw.webgpu.adapter import OPTIONAL_SHADER_FEATURES, select_adapter
    from q4gsw.webgpu.execute import Device

    try:
        adapter, info = select_adapter(cases[0].backend)
    except Exception as exc:  # a vanished adapter fails every case with its reason
        return None, f"{type(exc).__name__}: {exc}"
    features = tuple(sorted({f for c in cases for f in c.kernel.requires_features if f in info.features}))
    if any(c.kernel.origin.startswith("check:") for c in cases):
        # A kernel from the command line declares no needs: offer it the optional shader features the
        # adapter has, so `enable f16;` or subgroup builtins compile where the hardware allows them.
        features = tuple(f for f in OPTIONAL_SHADER_FEATURES if f in info.features)
    if opened is None:
        return Device(adapter, info, features), ""
    if features not in opened:
        opened[features] = Device(adapter, info, features)
    return opened[features], ""


def warm_up(device: Any, case: Case, root: Path) -> None:
    """A spare's work before its fixture: its first kernel's pipeline and an empty dispatch (Device.warm_up).
    Any failure is left for execute_case to meet again and report with the case."""
    from q4gsw.matrix.expressions import resolve_kernel

    with contextlib.suppress(Exception):
        overrides, _ = resolve_kernel(case.kernel, expression_names(case.config), device.info)
        op = op_for(case.config)
        x, constants = op.warm_up_problem()
        device.warm_up(case.kernel.source(root), overrides, case.kernel.name,
                       op.kernel_bindings(case.kernel.stage, x, constants))


def execute_config(cases: Sequence[Case], fixture: Path | None, seed: int | None, root: Path, repeats: int = 1,
                   opened: tuple[Any, str] | None = None, warmup_s: float | None = None) -> Iterator[Result]:
    """A config's cases on one device, each Result as it is judged: the device (opened here unless `opened`, as
    a warm child opened it ahead), the problem, then execute_case per case. A device or fixture that cannot be
    had fails every case with the reason."""
    device, failure = opened if opened is not None else open_device(list(cases))
    problem = None
    if not failure:
        try:
            problem = load_problem(cases[0].config, tuple(dict.fromkeys(c.input for c in cases)), fixture, seed)
        except Exception as exc:  # a bad fixture fails every case with its reason
            failure = f"{type(exc).__name__}: {exc}"
    if failure or problem is None:
        for case in cases:
            yield base_result(case, "fail", failure)
        return
    for case in cases:
        yield execute_case(case, device, problem, root, repeats=repeats, warmup_s=warmup_s)
