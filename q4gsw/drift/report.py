"""A baseline comparison (q4gsw.drift.rule) for people: the console section and summary.md's section.

The console and summary.md list every case that moved (drift, status changes, improvements) with its numbers, and
the new and vanished cases by id; junit.xml marks the drifted testcases (junit.build_junit's `drift`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from q4gsw.drift.rule import FLOOR_OF_ATOL, CaseDelta, Comparison
from q4gsw.report.result import format_number

LISTED = ("drift", "status", "improved")  # the kinds shown with their numbers
MARK = {"drift": "📈 DRIFT", "status": "🔀 status", "improved": "📉 improved"}
STYLE = {"drift": "bold red", "status": "yellow", "improved": "green"}
CONSOLE_IDS = 10  # new/vanished case ids printed before "... and N more"


def rule_text(comparison: Comparison, fail_on_drift: bool) -> str:
    return (f"drift: max or median |err| > factor × max(baseline, {FLOOR_OF_ATOL:g}·atol); factor "
            f"{comparison.factor:g} unless the config sets drift_factor; so is a failed case's count of non-finite "
            "outputs or writes past the output that grew; the gate also fails on a case that stopped "
            "passing, a measured case missing now" + (" (accepted: --accept-removed)" if comparison.accept_removed
                                                      else "") + " and a comparison of nothing"
            + (" (but for a run of only new cases: --accept-new)" if comparison.accept_new else "") + "; "
            + ("--fail-on-drift: a failed gate fails the run" if fail_on_drift else
               "reported only (add --fail-on-drift to fail on it)"))


def _errors(d: CaseDelta, name: str) -> tuple[str, str, str]:
    """(baseline, now, ratio) of one error measure, blank where a run did not record it."""
    for m in d.measures:
        if m.name == name:
            ratio = "∞" if math.isinf(m.ratio) else f"{m.ratio:.2f}×"
            return format_number(m.old, ".2e"), format_number(m.new, ".2e"), ratio
    old = d.old.max_abs if d.old is not None and name == "max |err|" else None
    new = d.new.max_abs if d.new is not None and name == "max |err|" else None
    return format_number(old, ".2e"), format_number(new, ".2e"), ""


def _headroom(d: CaseDelta) -> str:
    old, new = (format_number(r.headroom if r is not None else None, ".3f", "-") for r in (d.old, d.new))
    return f"{old} → {new}"


def _ids(deltas: Sequence[CaseDelta], limit: int | None) -> str:
    keys = [d.key for d in deltas]
    shown = keys if limit is None else keys[:limit]
    more = len(keys) - len(shown)
    return ", ".join(shown) + (f" … and {more} more" if more else "")


def print_comparison(comparison: Comparison, fail_on_drift: bool, console: Console | None = None) -> None:
    """The console section: the moved cases as a table, then new and vanished ids, then the one-line verdict
    (console: report.make_console's, laid out like the results table)."""
    console = console or Console()
    moved = [d for d in comparison.deltas if d.kind in LISTED]
    console.print()
    if moved:
        table = Table(title=f"compared with the baseline {escape(comparison.baseline)}", box=box.SIMPLE_HEAD,
                      show_edge=False, pad_edge=False, collapse_padding=True, title_justify="left")
        for column in ("case", "change", "max |err| then", "now", "ratio", "headroom", "median ratio"):
            table.add_column(column, justify="left" if column in ("case", "change", "headroom") else "right",
                             overflow="fold" if column == "case" else "ellipsis")  # the whole id, over lines
        for d in moved:
            then, now, ratio = _errors(d, "max |err|")
            table.add_row(escape(d.key), f"[{STYLE[d.kind]}]{d.kind.upper() if d.kind == 'drift' else d.kind}[/]",
                          then, now, ratio, _headroom(d), _errors(d, "median |err|")[2])
        console.print(table)
    gate = comparison.gate()
    removed = [line for line in gate if line.startswith("REMOVED ")]
    shown = [line for line in gate if line not in removed[CONSOLE_IDS:]]
    for line in shown:  # one line each, never wrapped: CI logs are searched for them
        word, rest = line.split(" ", 1)
        console.print(f"[bold red]{word}[/] {escape(rest)}", highlight=False, soft_wrap=True)
    if len(removed) > CONSOLE_IDS:
        console.print(f"REMOVED … and {len(removed) - CONSOLE_IDS} more (summary.md lists them all)", highlight=False)
    for kind in ("new", "vanished"):
        listed = comparison.of(kind)
        if listed:
            console.print(f"{kind}: {escape(_ids(listed, CONSOLE_IDS))}", highlight=False, soft_wrap=True)
    console.print(f"baseline: {escape(comparison.line())}", highlight=False, soft_wrap=True)
    console.print(escape(comparison.gate_line()), highlight=False, soft_wrap=True,
                  style="bold red" if gate else "green")
    console.print(escape(rule_text(comparison, fail_on_drift)), highlight=False, style="dim", soft_wrap=True)


def show_comparison(comparison: Comparison | None, problem: str, fail_on_drift: bool, console: Console) -> int:
    """print_comparison, or why there is none (baseline.diff_with's problem, or printing it broke): never an
    exception once the run's results are written. Returns how many reasons the gate fails for (1 when the
    comparison broke: the gate cannot hold)."""
    if comparison is not None:
        try:
            print_comparison(comparison, fail_on_drift, console)
            return len(comparison.gate())
        except Exception as exc:
            problem = f"the comparison with the baseline {comparison.baseline} could not be shown " \
                      f"({type(exc).__name__}: {exc})"
    if not problem:
        return 0
    print(f"warning: {problem}" + ("; --fail-on-drift: the gate cannot hold" if fail_on_drift else ""),
          file=sys.stderr, flush=True)
    return 1


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown_section(comparison: Comparison, fail_on_drift: bool, heading: str = "Compared with the baseline") -> str:
    """summary.md's "Compared with the baseline" section (also in $GITHUB_STEP_SUMMARY); `report --versions` gives
    each release step its own heading."""
    counts = comparison.counts()
    lines = [f"### {heading}", "", f"**{_cell(comparison.line())}**", "",
             f"**{_cell(comparison.gate_line())}**", "", _cell(rule_text(comparison, fail_on_drift)), ""]
    moved = [d for d in comparison.deltas if d.kind in LISTED]
    if moved:
        lines += ["| change | case | max \\|err\\| baseline | max \\|err\\| now | ratio | headroom baseline → now | "
                  "median \\|err\\| ratio | why |", "|---|---|---|---|---|---|---|---|"]
        for d in moved:
            then, now, ratio = _errors(d, "max |err|")
            lines.append("| " + " | ".join(_cell(c) for c in (MARK[d.kind], f"`{d.key}`", then, now, ratio,
                                                              _headroom(d), _errors(d, "median |err|")[2],
                                                              d.reason())) + " |")
        lines.append("")
    elif not counts["new"] and not counts["vanished"]:
        lines += ["No case moved.", ""]
    for kind, what in (("new", "not in the baseline"), ("vanished", "in the baseline, not in these results")):
        listed = comparison.of(kind)
        if listed:
            lines += [f"<details><summary>{len(listed)} {kind} ({what})</summary>", "",
                      *(f"- `{d.key}`" + (f": {_cell(d.reason())}" if d.removed else "") for d in listed), "",
                      "</details>", ""]
    if not comparison.compared and not comparison.new_accepted:  # accepted: the gate line above says so
        lines += [f"**{_cell(comparison.gate()[-1])}**", ""]
    return "\n".join(lines)
