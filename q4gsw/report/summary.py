"""Markdown summary (summary.md) of a run or of merged runs; also appended to $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from q4gsw.report.junit import case_name, reproduce_line
from q4gsw.report.result import Result, format_number, summary_line

STATUS_MARK = {"pass": "✅ pass", "fail": "❌ FAIL", "skip": "⏭️ skip", "unsupported": "⚠️ unsupported"}
COLUMNS = ("status", "config", "shape", "kernel", "input", "backend", "webgpu", "routed", "adapter", "max abs err",
           "max rel err", "headroom", "worst (m, n)", "mismatches", "atol / rtol", "GPU s", "GFLOP/s",
           "export/golden/gpu/compare s", "peak RSS")


def cell(value: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def ordered(results: Sequence[Result]) -> list[Result]:
    """Group by config (first appearance), then kernel, input and backend, so backends sit side by side."""
    first = {}
    for r in results:
        first.setdefault(r.config, len(first))
    return sorted(results, key=lambda r: (first[r.config], r.kernel, r.input, r.backend, r.webgpu))


def stages(r: Result) -> str:
    """Per-stage seconds (- where a stage did not run); a golden stored in the fixture came with its export."""
    t = r.timings
    values = (t.export_s, t.golden_s, t.gpu_s, t.compare_s)
    return "/".join("-" if v is None else f"{v:.1f}" for v in values) if any(v is not None for v in values) else ""


def row(r: Result) -> list[str]:
    e, tol = r.errors, r.tolerance
    worst = e.worst_index if e is not None else None
    webgpu = r.adapter.webgpu_package if r.adapter is not None and r.adapter.webgpu_package else r.webgpu
    return [STATUS_MARK.get(r.status, r.status), r.config, r.shape.text, r.kernel, r.input, r.backend, webgpu,
            r.routed, r.adapter.name if r.adapter is not None else "",
            format_number(e.max_abs if e is not None else None, ".2e"),
            format_number(e.max_rel if e is not None else None, ".2e"),
            format_number(e.headroom if e is not None else None, ".3f"),
            f"({worst[0]}, {worst[1]})" if worst else "",
            f"{e.mismatches}/{e.elements}" if e is not None else "",
            f"{tol.atol:g} / {tol.rtol:g}" if tol is not None else "",
            format_number(r.timings.gpu_s, ".3f"), format_number(r.timings.gflops, ".2f"), stages(r),
            f"{r.peak_rss_bytes / 2**30:.2f} GiB" if r.peak_rss_bytes else ""]


def webgpu_facts(results: Sequence[Result]) -> list[str]:
    """The WebGPU implementations with their exact packages and builds, and the drivers, the results ran on."""
    adapters = [r.adapter for r in results if r.adapter is not None]
    described = {a.webgpu for a in adapters}
    implementations = [*dict.fromkeys(a.webgpu_text() for a in adapters),
                       *dict.fromkeys(r.webgpu for r in results if r.webgpu and r.webgpu not in described)]
    drivers = list(dict.fromkeys(a.driver_text() for a in adapters))
    return ([f"WebGPU {', '.join(implementations)}"] if implementations else []) + \
        ([f"driver {', '.join(drivers)}"] if drivers else [])


def where(r: Result) -> str:
    """`backend` and, where recorded, the WebGPU implementation that ran the case."""
    return f"`{r.backend}`" + (f" ({r.webgpu})" if r.webgpu else "")


def markdown_summary(results: Sequence[Result], meta: dict[str, Any] | None = None, title: str | None = None,
                     plots: Sequence[str] = (), notes: Sequence[str] = (), baseline: str = "") -> str:
    """baseline: the comparison with a baseline run (drift_report.markdown_section), shown above the table."""
    meta = meta or {}
    results = ordered(results)
    backends = sorted({r.backend for r in results})
    heading = title or f"q4gsw accuracy: {', '.join(backends) or meta.get('backend', 'no results')}"
    lines = [f"## {heading}", "", f"**{summary_line(list(results))}**", ""]
    facts = []
    if meta.get("merged_from"):
        facts.append(f"merged from {len(meta['merged_from'])} result files")
    if meta.get("q4gsw_version"):
        facts.append(f"q4gsw {meta['q4gsw_version']}")
    facts += webgpu_facts(results)
    if meta.get("host"):
        facts.append(f"host `{meta['host']}`")
    if isinstance(meta.get("wall_s"), int | float):
        facts.append(f"wall {meta['wall_s']:.1f} s")
    if meta.get("interrupted"):
        facts.append("**interrupted: partial results**")
    if facts:
        lines += [" · ".join(facts), ""]
    if baseline:
        lines += [baseline.rstrip("\n"), ""]
    if results:
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
        for r in results:
            lines.append("| " + " | ".join(cell(v) for v in row(r)) + " |")
        lines.append("")
        lines.append("headroom = max |y − g| / (atol + rtol·|g|) over all outputs: ≤ 1 passes, 0.01 is 100× margin.")
        lines.append("")
    failures = [r for r in results if r.status == "fail"]
    if failures:
        lines += ["### Failures", ""]
        for r in failures:
            lines.append(f"- **{cell(case_name(r))}** on {where(r)}: {cell(r.message)}")
            lines.append("")
            lines.append(f"  ```\n  {reproduce_line(r)}\n  ```")
        lines.append("")
    other = [r for r in results if r.status in ("skip", "unsupported")]
    if other:
        lines += ["### Skipped and unsupported", ""]
        lines += [f"- {r.status}: **{cell(case_name(r))}** on {where(r)}: {cell(r.message)}" for r in other]
        lines.append("")
    if plots:
        lines += ["### Plots", ""] + [f"- `{p}`" for p in plots] + [""]
    if notes:
        lines += ["### Notes", ""] + [f"- {cell(n)}" for n in notes] + [""]
    return "\n".join(lines)


def append_step_summary(markdown: str) -> Path | None:
    """Append to $GITHUB_STEP_SUMMARY when it is set (GitHub Actions); returns the file written."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as out:
        out.write(markdown.rstrip("\n") + "\n\n")
    return path
