"""Human and machine reports of a run: the terminal table, results JSON and the closing count line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from q4gsw.result import Result, summary_line, write_results

STATUS_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow", "unsupported": "magenta"}


def _fmt(value: Any, spec: str = ".2e") -> str:
    return "" if value is None or value == "" else format(value, spec)


def results_table(results: list[Result], title: str = "q4gsw results") -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("config", "M×K×N", "kernel", "input", "status", "max |err|", "max rel", "headroom",
                   "worst (m,n)", "GFLOP/s", "time s", "peak RSS"):
        table.add_column(column, justify="right" if column not in ("config", "kernel", "input", "status") else "left")
    for r in results:
        e, t = r.errors, r.timings
        shape = f"{r.shape.get('M')}×{r.shape.get('K')}×{r.shape.get('N')}" if r.shape else ""
        worst = e.get("worst_index")
        table.add_row(r.config, shape, r.kernel, r.input,
                      f"[{STATUS_STYLE.get(r.status, '')}]{r.status.upper()}[/]",
                      _fmt(e.get("max_abs")), _fmt(e.get("max_rel")), _fmt(e.get("headroom"), ".3f"),
                      f"({worst[0]},{worst[1]})" if worst else "", _fmt(t.get("gflops"), ".2f"),
                      _fmt(t.get("total_s"), ".1f"),
                      f"{r.peak_rss_bytes / 2**30:.2f} GiB" if r.peak_rss_bytes else "")
    return table


def print_report(results: list[Result], console: Console | None = None) -> None:
    # Piped output (CI logs, nox) gets a wide table rather than rich's 80-column default.
    console = console or Console(width=None if sys.stdout.isatty() else 220)
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


def write_run_outputs(results_dir: Path, results: list[Result], meta: dict[str, Any]) -> Path:
    path = results_dir / "results.json"
    write_results(path, results, meta)
    return path
