"""Human and machine reports of a run: the terminal table, results JSON and the closing count line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from q4gsw.report.result import ReportNotWritten, Result, format_number, replace_file, summary_line, write_results

if TYPE_CHECKING:
    from q4gsw.drift.rule import Comparison
    from q4gsw.report.plots import HistogramsAhead

STATUS_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow", "unsupported": "magenta"}


CONSOLE_WIDTH = 100  # the results table is laid out to fit this


def make_console() -> Console:
    # Piped output (CI logs, nox) gets a fixed width rather than rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else CONSOLE_WIDTH)


def _by_backend(results: list[Result]) -> dict[str, list[Result]]:
    """Results by backend, in order of first appearance."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.backend, []).append(r)
    return groups


def table_title(backend: str, results: list[Result]) -> str:
    """'q4gsw results: BACKEND (WEBGPU)': the WebGPU implementation(s) that ran the backend's cases."""
    implementations = ", ".join(dict.fromkeys(r.webgpu for r in results if r.webgpu))
    return f"q4gsw results: {backend}" + (f" ({implementations})" if implementations else "")


def results_table(results: list[Result], title: str = "q4gsw results") -> Table:
    """The compact console table (fits 100 columns). Worst index, per-stage seconds, peak RSS and the
    adapter are in summary.md and results.json; the backend and WebGPU implementation are in the title."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  title_justify="left")
    for column in ("config", "kernel", "input", "status", "max |err|", "headroom", "GFLOP/s", "time s"):
        table.add_column(column, justify="left" if column in ("config", "kernel", "input", "status") else "right")
    for r in results:
        e, t = r.errors, r.timings
        table.add_row(r.config, r.kernel, r.input, f"[{STATUS_STYLE.get(r.status, '')}]{r.status.upper()}[/]",
                      format_number(e.max_abs if e is not None else None, ".2e"),
                      format_number(e.headroom if e is not None else None, ".3f"),
                      format_number(t.gflops, ".2f"), format_number(t.total_s, ".1f"))
    return table


def print_report(results: list[Result], console: Console | None = None) -> None:
    from q4gsw.report.junit import case_label

    console = console or make_console()
    for index, (backend, group) in enumerate(_by_backend(results).items()):
        if index:
            console.print()
        console.print(results_table(group, title=table_title(backend, group)))
    for r in results:
        if r.status in ("fail", "unsupported"):
            console.print(f"[{STATUS_STYLE[r.status]}]{r.status.upper()}[/] {escape(case_label(r))}: "
                          f"{escape(r.message)}", markup=True, highlight=False)
            if r.status == "fail":
                console.print(f"  reproduce: {r.reproduce}", highlight=False, markup=False)
        elif r.status == "skip":
            console.print(f"[yellow]SKIP[/] {escape(r.config)}: {escape(r.message)}", highlight=False)
    print(summary_line(results), flush=True)


def write_run_outputs(results_dir: Path, results: list[Result], meta: dict[str, Any], *,
                      write_json: bool = True, step_summary: bool = True, title: str | None = None,
                      plots_ahead: HistogramsAhead | None = None, comparison: Comparison | None = None,
                      fail_on_drift: bool = False) -> Path:
    """Write results.json, junit.xml, summary.md and plots/*.png into results_dir; returns results.json.

    results.json is written first, whole or not at all: when it cannot be written (a full disk) nothing else is
    written either, so the folder keeps the previous run's reports, consistent with each other, and
    ReportNotWritten says why (the caller fails the command). A problem in any other report is printed as a
    warning and never loses the run. summary.md is also appended to $GITHUB_STEP_SUMMARY when that is set.
    comparison: the results compared with a baseline run, shown in summary.md and marked in junit.xml.
    """
    from q4gsw.drift.report import markdown_section
    from q4gsw.report.junit import write_junit
    from q4gsw.report.plots import write_plots
    from q4gsw.report.summary import append_step_summary, markdown_summary

    path = results_dir / "results.json"
    if write_json:
        write_results(path, results, meta)
    results_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    drift: dict[str, str] | None = None
    section = ""
    try:  # the comparison with a baseline is secondary: junit.xml and summary.md are written without it if it breaks
        drift = comparison.drift_by_case() if comparison else None
    except Exception as exc:
        notes.append(f"junit.xml written without the comparison with the baseline: {type(exc).__name__}: {exc}")
    try:
        section = markdown_section(comparison, fail_on_drift) if comparison else ""
    except Exception as exc:
        notes.append(f"summary.md written without the comparison with the baseline: {type(exc).__name__}: {exc}")
    try:
        write_junit(results_dir / "junit.xml", results, meta, drift, fail_on_drift)
    except ReportNotWritten as exc:  # reports are secondary to results.json
        notes.append(str(exc))
    except Exception as exc:
        notes.append(f"junit.xml not written: {type(exc).__name__}: {exc}")
    try:
        plots, plot_notes = write_plots(results_dir / "plots", results, plots_ahead)
    except Exception as exc:
        plots, plot_notes = [], [f"plots not written: {type(exc).__name__}: {exc}"]
    notes += plot_notes
    try:
        markdown = markdown_summary(results, meta, title=title,
                                    plots=[str(p.relative_to(results_dir)) for p in plots], notes=notes,
                                    baseline=section)
        replace_file(results_dir / "summary.md", markdown.encode("utf-8"))
        if step_summary:
            append_step_summary(markdown)
    except ReportNotWritten as exc:
        notes.append(str(exc))
    except Exception as exc:
        notes.append(f"summary.md not written: {type(exc).__name__}: {exc}")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return path
