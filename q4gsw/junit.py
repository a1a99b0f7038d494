"""JUnit XML (junit.xml) of a run or of merged runs, for CI test-report viewers.

One <testsuite> per backend; one <testcase> per config x kernel x input x backend with
classname = backend and name = "config/kernel/input". A failure carries the max abs/rel error,
the worst (m, n), the mismatch count, the tolerance and the one line that reproduces it; skipped
and unsupported cases are <skipped>. Written with xml.etree (no extra dependency).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from q4gsw.result import Result, format_number


def case_name(result: Result) -> str:
    """config/kernel/input (the parts that exist): unique within a backend."""
    return "/".join(p for p in (result.config, result.kernel, result.input) if p)


def reproduce_line(result: Result) -> str:
    """The one command that reproduces this case: always `--config NAME`, never `--shard`."""
    if result.reproduce:
        return result.reproduce
    return f"python -m q4gsw run --backend {result.backend} --config {result.config}"


def failure_kind(result: Result) -> str:
    e = result.errors
    if e.get("nonfinite"):
        return "NonFiniteOutput"
    if e.get("guard_violations"):
        return "OutOfBoundsWrite"
    if e.get("mismatches"):
        return "ToleranceExceeded"
    return "RunFailure"  # crash, timeout, unavailable backend, bad fixture, kernel compile error


def failure_details(result: Result) -> str:
    """Multi-line failure text: errors, worst element, tolerance, adapter and the reproduce line."""
    e, tol = result.errors, result.tolerance
    lines = [result.message]
    if e:
        worst = e.get("worst_index")
        max_abs, max_rel = (format_number(e.get(key), ".3e", "n/a") for key in ("max_abs", "max_rel"))
        lines.append(f"max abs error {max_abs}, max rel error {max_rel}, "
                     f"headroom {format_number(e.get('headroom'), '.3f', 'n/a')} (max |err| / bound; <= 1 passes)")
        lines.append(f"worst (m, n) = ({worst[0]}, {worst[1]}); " if worst else "worst (m, n) = n/a; ")
        lines[-1] += (f"{e.get('mismatches', 'n/a')}/{e.get('elements', 'n/a')} elements out of tolerance, "
                      f"{e.get('nonfinite', 0)} non-finite, {e.get('guard_violations', 0)} guard words changed")
    if tol:
        lines.append(f"tolerance: atol {tol.get('atol')} + rtol {tol.get('rtol')} * |golden| "
                     f"({tol.get('source', 'config')}): {tol.get('justification', '')}")
    if result.adapter:
        lines.append(f"adapter: {result.adapter.get('name', '?')} ({result.adapter.get('device_type', '?')}, "
                     f"{result.adapter.get('api', '?')}, driver {result.adapter.get('driver') or 'n/a'})")
    lines.append(f"reproduce: {reproduce_line(result)}")
    return "\n".join(lines)


def _case_time(result: Result) -> float:
    t = result.timings
    for key in ("gpu_wall_s", "gpu_s", "total_s"):
        if isinstance(t.get(key), int | float):
            return float(t[key])
    return 0.0


def build_junit(results: list[Result], meta: dict[str, Any] | None = None) -> ET.ElementTree:
    meta = meta or {}
    root = ET.Element("testsuites", name="q4gsw")
    by_backend: dict[str, list[Result]] = {}
    for r in results:
        by_backend.setdefault(r.backend, []).append(r)
    timestamp = meta.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for backend, cases in by_backend.items():
        suite = ET.SubElement(root, "testsuite", name=backend, timestamp=str(timestamp).removesuffix("Z"),
                              hostname=str(meta.get("host", "")))
        props = ET.SubElement(suite, "properties")
        adapter = next((r.adapter for r in cases if r.adapter), {})
        versions = next((r.versions for r in cases if r.versions), {})
        for key, value in (("adapter", adapter.get("name", "")), ("adapter_driver", adapter.get("driver", "")),
                           ("q4gsw_version", meta.get("q4gsw_version", versions.get("q4gsw", ""))),
                           ("command", meta.get("command", "")), ("matrix", meta.get("matrix", "")),
                           *((f"version.{k}", v) for k, v in sorted(versions.items()))):
            if value:
                ET.SubElement(props, "property", name=key, value=str(value))
        failures = skipped = 0
        suite_time = 0.0
        for r in cases:
            seconds = _case_time(r)
            suite_time += seconds
            case = ET.SubElement(suite, "testcase", classname=backend, name=case_name(r), time=f"{seconds:.3f}")
            if r.status == "fail":
                failures += 1
                failure = ET.SubElement(case, "failure", message=r.message.splitlines()[0] if r.message else "failed",
                                        type=failure_kind(r))
                failure.text = failure_details(r)
            elif r.status in ("skip", "unsupported"):
                skipped += 1
                ET.SubElement(case, "skipped", message=f"{r.status}: {r.message}", type=r.status)
            out = ET.SubElement(case, "system-out")
            out.text = f"{r.status.upper()} {r.case_id}: {r.message}\nreproduce: {reproduce_line(r)}\n"
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
        suite.set("time", f"{suite_time:.3f}")
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["skipped"] += skipped
        totals["time"] += suite_time
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    root.set("time", f"{float(meta.get('wall_s') or totals['time']):.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, results: list[Result], meta: dict[str, Any] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    build_junit(results, meta).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
    return path
