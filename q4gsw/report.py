"""Human and machine reports of a run: the terminal table, results JSON and the closing count line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from q4gsw.result import Result, format_number, summary_line, write_results

STATUS_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow", "unsupported": "magenta"}


def make_console() -> Console:
    # Piped output (CI logs, nox) gets a wide table rather than rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 220)


def _stages(timings: dict[str, float]) -> str:
    """Per-stage seconds; a golden stored in the fixture was computed during its export."""
    stages = [timings.get(key) for key in ("export_s", "golden_s", "gpu_s", "compare_s")]
    return "/".join("-" if value is None else f"{value:.1f}" for value in stages) if any(stages) else ""


def results_table(results: list[Result], title: str = "q4gsw results") -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("config", "M×K×N", "kernel", "input", "status", "max |err|", "max rel", "headroom",
                   "worst (m,n)", "GFLOP/s", "export/golden/gpu/compare s", "time s", "peak RSS"):
        table.add_column(column, justify="right" if column not in ("config", "kernel", "input", "status") else "left")
    for r in results:
        e, t = r.errors, r.timings
        shape = f"{r.shape.get('M')}×{r.shape.get('K')}×{r.shape.get('N')}" if r.shape else ""
        worst = e.get("worst_index")
        table.add_row(r.config, shape, r.kernel, r.input,
                      f"[{STATUS_STYLE.get(r.status, '')}]{r.status.upper()}[/]",
                      format_number(e.get("max_abs"), ".2e"), format_number(e.get("max_rel"), ".2e"),
                      format_number(e.get("headroom"), ".3f"),
                      f"({worst[0]},{worst[1]})" if worst else "", format_number(t.get("gflops"), ".2f"),
                      _stages(t), format_number(t.get("total_s"), ".1f"),
                      f"{r.peak_rss_bytes / 2**30:.2f} GiB" if r.peak_rss_bytes else "")
    return table


def print_report(results: list[Result], console: Console | None = None) -> None:
    console = console or make_console()
    console.print(results_table(results))
    for r in results:
        if r.status in ("fail", "unsupported"):
            console.print(f"[{STATUS_STYLE[r.status]}]{r.status.upper()}[/] {r.case_id}: {r.message}", markup=True,
                          highlight=False)
            if r.status == "fail":
                console.print(f"  reproduce: {r.reproduce}", highlight=False, markup=False)
        elif r.status == "skip":
            console.print(f"[yellow]SKIP[/] {r.config}: {r.message}", highlight=False)
    print(summary_line(results), flush=True)


def write_run_outputs(results_dir: Path, results: list[Result], meta: dict[str, Any], *,
                      write_json: bool = True, step_summary: bool = True, title: str | None = None) -> Path:
    """Write results.json, junit.xml, summary.md and plots/*.png into results_dir; returns results.json.

    results.json is written first; a problem in any other report is printed as a warning and never
    loses the run. summary.md is also appended to $GITHUB_STEP_SUMMARY when that is set.
    """
    from q4gsw.junit import write_junit
    from q4gsw.plots import write_plots
    from q4gsw.summary import append_step_summary, markdown_summary

    path = results_dir / "results.json"
    if write_json:
        write_results(path, results, meta)
    results_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    try:
        write_junit(results_dir / "junit.xml", results, meta)
    except Exception as exc:  # reports are secondary to results.json
        notes.append(f"junit.xml not written: {type(exc).__name__}: {exc}")
    try:
        plots, plot_notes = write_plots(results_dir / "plots", results)
    except Exception as exc:
        plots, plot_notes = [], [f"plots not written: {type(exc).__name__}: {exc}"]
    notes += plot_notes
    try:
        markdown = markdown_summary(results, meta, title=title,
                                    plots=[str(p.relative_to(results_dir)) for p in plots], notes=notes)
        (results_dir / "summary.md").write_text(markdown, encoding="utf-8")
        if step_summary:
            append_step_summary(markdown)
    except Exception as exc:
        notes.append(f"summary.md not written: {type(exc).__name__}: {exc}")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return path
