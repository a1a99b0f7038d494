"""JUnit XML (junit.xml) of a run or of merged runs, for CI test-report viewers.

One <testsuite> per backend; one <testcase> per config x kernel x input x backend with
classname = "backend.webgpu" (the WebGPU implementation that ran it, e.g. swiftshader.dawn; just the
backend where that is unknown) and name = "config/kernel/input". Each testcase's <properties> name the
WebGPU implementation, the variant ExecuTorch would route the config to, the role and the adapter.
A failure carries the max abs/rel error, the worst (m, n), the mismatch count, the tolerance and the
one line that reproduces it; skipped and unsupported cases are <skipped>. Compared with a baseline run, a
drifted case has a `drift` property (why) and, under --fail-on-drift, a <failure type="AccuracyDrift">.
Written with xml.etree (no extra dependency).
"""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from q4gsw.report.result import Result, format_number, replace_file


def case_name(result: Result) -> str:
    """config/kernel/input (the parts that exist): unique within a backend."""
    return "/".join(p for p in (result.config, result.kernel, result.input) if p)


def case_label(result: Result) -> str:
    """The case id the engine recorded; for results without one, config/kernel/input@backend."""
    return result.case_id or f"{case_name(result)}@{result.backend}"


def class_name(result: Result) -> str:
    """JUnit classname: backend.webgpu, so the WebGPU implementation that ran the case shows in viewers."""
    return f"{result.backend}.{result.webgpu}" if result.webgpu else result.backend


def reproduce_line(result: Result) -> str:
    """The one command that reproduces this case: always `--config NAME`, never `--shard`."""
    if result.reproduce:
        return result.reproduce
    return f"python -m q4gsw run --backend {result.backend} --config {result.config}"


def failure_kind(result: Result) -> str:
    e = result.errors
    if e is not None and e.nonfinite:
        return "NonFiniteOutput"
    if e is not None and e.guard_violations:
        return "OutOfBoundsWrite"
    if e is not None and e.mismatches:
        return "ToleranceExceeded"
    return "RunFailure"  # crash, timeout, unavailable backend, bad fixture, kernel compile error


def failure_details(result: Result) -> str:
    """Multi-line failure text: errors, worst element, tolerance, adapter and the reproduce line."""
    e, tol, adapter = result.errors, result.tolerance, result.adapter
    lines = [result.message]
    if e is not None:
        worst = e.worst_index
        max_abs, max_rel = (format_number(value, ".3e", "n/a") for value in (e.max_abs, e.max_rel))
        lines.append(f"max abs error {max_abs}, max rel error {max_rel}, "
                     f"headroom {format_number(e.headroom, '.3f', 'n/a')} (max |err| / bound; <= 1 passes)")
        lines.append(f"worst (m, n) = ({worst[0]}, {worst[1]}); " if worst else "worst (m, n) = n/a; ")
        lines[-1] += (f"{e.mismatches}/{e.elements} elements out of tolerance, "
                      f"{e.nonfinite} non-finite, {e.guard_violations} guard words changed")
    if tol is not None:
        lines.append(f"tolerance: atol {tol.atol} + rtol {tol.rtol} * |golden| ({tol.source}): {tol.justification}")
    if adapter is not None:
        lines.append(f"adapter: {adapter.name or '?'} ({adapter.device_type or '?'}, {adapter.api or '?'}, "
                     f"driver {adapter.driver_text()})")
    if result.webgpu or result.routed:
        webgpu = adapter.webgpu_text() if adapter is not None and adapter.webgpu_package else result.webgpu
        lines.append(f"webgpu: {webgpu or 'n/a'}; routed variant: {result.routed or 'n/a'}")
    lines.append(f"reproduce: {reproduce_line(result)}")
    return "\n".join(lines)


def _case_time(result: Result) -> float:
    t = result.timings
    for value in (t.gpu_wall_s, t.gpu_s, t.total_s):
        if isinstance(value, int | float):
            return float(value)
    return 0.0


def case_properties(result: Result) -> list[tuple[str, str]]:
    """Per-testcase <property> pairs (the empty ones left out)."""
    adapter = result.adapter
    pairs = [("webgpu", result.webgpu), ("webgpu_package", adapter.webgpu_package if adapter is not None else ""),
             ("routed", result.routed),
             ("role", result.role if result.role != "subject" else ""), ("upstream", result.upstream),
             ("adapter", adapter.name if adapter is not None else ""), ("shape", result.shape.text)]
    return [(key, str(value)) for key, value in pairs if value]


def build_junit(results: list[Result], meta: dict[str, Any] | None = None, drift: Mapping[str, str] | None = None,
                drift_fails: bool = False) -> ET.ElementTree:
    """drift: case label -> why it drifted from the baseline (q4gsw.drift.rule); drift_fails: a failure
    (--fail-on-drift)."""
    meta = meta or {}
    drift = drift or {}
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
        adapter = next((r.adapter for r in cases if r.adapter is not None), None)
        versions = next((r.provenance.versions for r in cases if r.provenance.versions), {})
        implementations = ", ".join(dict.fromkeys(r.webgpu for r in cases if r.webgpu))
        # Every WebGPU package and build the suite's cases ran on (a merge of two versions' runs has both).
        packages, builds = (", ".join(dict.fromkeys(getattr(r.adapter, name) for r in cases
                                                    if r.adapter is not None and getattr(r.adapter, name)))
                            for name in ("webgpu_package", "webgpu_build"))
        for key, value in (("adapter", adapter.name if adapter else ""),
                           ("adapter_driver", adapter.driver if adapter else ""),
                           ("driver_package", adapter.driver_package if adapter else ""), ("webgpu", implementations),
                           ("webgpu_package", packages), ("webgpu_build", builds),
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
            case = ET.SubElement(suite, "testcase", classname=class_name(r), name=case_name(r),
                                 time=f"{seconds:.3f}")
            moved = drift.get(case_label(r), "")
            pairs = case_properties(r) + ([("drift", moved)] if moved else [])
            if pairs:
                case_props = ET.SubElement(case, "properties")
                for key, value in pairs:
                    ET.SubElement(case_props, "property", name=key, value=value)
            if r.status == "fail":
                failures += 1
                failure = ET.SubElement(case, "failure", message=r.message.splitlines()[0] if r.message else "failed",
                                        type=failure_kind(r))
                failure.text = failure_details(r)
            elif moved and drift_fails:
                failures += 1
                failure = ET.SubElement(case, "failure", message=f"drift from the baseline: {moved}",
                                        type="AccuracyDrift")
                failure.text = f"{moved}\nreproduce: {reproduce_line(r)}"
            elif r.status in ("skip", "unsupported"):
                skipped += 1
                ET.SubElement(case, "skipped", message=f"{r.status}: {r.message}", type=r.status)
            out = ET.SubElement(case, "system-out")
            out.text = f"{r.status.upper()} {case_label(r)}: {r.message}\nreproduce: {reproduce_line(r)}\n"
            if moved:
                out.text += f"DRIFT from the baseline: {moved}\n"
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


def write_junit(path: Path, results: list[Result], meta: dict[str, Any] | None = None,
                drift: Mapping[str, str] | None = None, drift_fails: bool = False) -> Path:
    """junit.xml, replaced whole or left as it was (result.replace_file: ReportNotWritten)."""
    text = io.BytesIO()
    build_junit(results, meta, drift, drift_fails).write(text, encoding="utf-8", xml_declaration=True)
    replace_file(path, text.getvalue())
    return path
