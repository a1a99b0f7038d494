"""The hidden child entry points: `_child` (a config's cases on one device), `_probe` (find the backend's adapter),
`_compile` (does the other WGSL compiler accept a kernel?) and `_export` (the run's one export process). Each dies
with its parent (procs.die_with_parent)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from q4gsw.case import execute_config, open_device, warm_up
from q4gsw.cases import case_from_plain, to_plain
from q4gsw.console import last_lines as _last_lines
from q4gsw.console import say
from q4gsw.report.result import Result
from q4gsw.run.procs import die_with_parent, start_deadline

PROBE_TIMEOUT_S = 180
BACKEND_MISSING = 3  # _probe's exit status when the adapter is not there (its stderr says why)


def child_main(job_path: Path) -> int:
    """`python -m q4gsw _child JOB.json`: run a config's cases on one device, writing Results as they finish.

    A job without "fixture" is a warm spare (children.ConfigChild): it imports and opens its device first,
    then reads one line from stdin, `{"fixture": PATH or null}`, and only then starts its deadline; an
    empty stdin means its config will not run."""
    job = json.loads(job_path.read_text())
    spare = "fixture" not in job
    die_with_parent(0 if spare else float(job["deadline_s"]))
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
        start_deadline(float(job["deadline_s"]))
    fixture = Path(job["fixture"]) if job["fixture"] else None
    for result in execute_config(cases, fixture, job.get("seed"), Path(job["root"]), int(job.get("repeats", 1)),
                                 opened=(device, failure), warmup_s=job.get("warmup_s")):
        results.append(result)
        flush()
        say(verdict_line(result), "    ")
    flush()
    return 0


def verdict_line(result: Result) -> str:
    rate = f", {result.timings.gflops:.2f} GFLOP/s" if result.timings.gflops else ""
    return f"{result.kernel} / {result.input}: {result.status.upper()} {result.message}{rate}"


def probe_main(backend_json: str) -> int:
    from q4gsw.cases import backend_from_plain
    from q4gsw.webgpu.adapter import BackendUnavailable, select_adapter

    die_with_parent(PROBE_TIMEOUT_S)
    try:
        _, info = select_adapter(backend_from_plain(json.loads(backend_json)))
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BACKEND_MISSING
    print(json.dumps(to_plain(info)))
    return 0


def compile_main(job_json: str) -> int:
    """`python -m q4gsw _compile JOB`: does this implementation's compiler accept the case's kernel? (ok/rejected)"""
    from q4gsw.matrix.expressions import resolve_kernel
    from q4gsw.ops import expression_names
    from q4gsw.webgpu.adapter import select_adapter
    from q4gsw.webgpu.execute import Device, KernelCompileError

    job = json.loads(job_json)
    case = case_from_plain(job["case"])
    try:
        adapter, info = select_adapter(case.backend)
        overrides, _ = resolve_kernel(case.kernel, expression_names(case.config), info)
        features = tuple(f for f in case.kernel.requires_features if f in info.features)
        Device(adapter, info, features).pipeline(case.kernel.source(Path(job["root"])), overrides, case.kernel.name)
    except KernelCompileError as exc:
        print(f"rejected: {_last_lines(str(exc), 2)}")
        return 0
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {_last_lines(str(exc), 2)}")
        return 0
    print("ok")
    return 0


def export_main(matrix_path: Path, names: list[str], cache: Path) -> int:
    """`python -m q4gsw _export --config A --config B ...`: ensure each fixture, one READY/FAILED line each."""
    from q4gsw.export.fixtures import ensure_fixture, quiet_library_output
    from q4gsw.matrix.load import load_matrix

    die_with_parent(0)
    quiet_library_output()
    matrix = load_matrix(matrix_path)
    for name in names:
        config = matrix.config(name)
        try:
            fixture = ensure_fixture(config, cache, lambda message: say(message, "    "))
        except Exception as exc:  # this config fails with the reason; the next one is still exported
            print(f"FAILED {name} {export_failure(name, exc)}", flush=True)
            continue
        print(f"READY {name} {fixture.path}", flush=True)
    return 0


def export_failure(name: str, exc: Exception) -> str:
    return f"export of '{name}' failed: {type(exc).__name__}: {' | '.join(str(exc).splitlines()[-3:])}"


def internal_command(args: Any) -> int:
    """`python -m q4gsw _export|_probe|_compile|_child`: the processes the engine starts, never a user."""
    if args.command == "_export":
        return export_main(Path(args.matrix), args.config, args.cache)
    if args.command == "_probe":
        return probe_main(args.backend_json)
    if args.command == "_compile":
        return compile_main(args.job)
    return child_main(args.job)
