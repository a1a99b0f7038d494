"""`python -m q4gsw list`: the matrix's configs (with their ops, tiers and tolerances) and kernels."""

from __future__ import annotations

from q4gsw.matrix.load import Matrix
from q4gsw.ops import op_for
from q4gsw.report import verdict


def cmd_list(matrix: Matrix) -> int:
    from rich.table import Table

    from q4gsw.report.write import make_console

    console = make_console()
    # Every config runs on every backend: the backends are named once, in the caption, so the table fits the
    # console's width without truncating config names (a repeated backends column squeezed them to "gate_pr…").
    table = Table(title=f"{matrix.path}", caption=f"backends: {', '.join(matrix.backends)}")
    widest = max(len(c.name) for c in matrix.configs)
    for column in ("config", "op", "suite", "tier", "shape", "inputs", "atol/rtol"):
        table.add_column(column, **({"no_wrap": True, "min_width": widest} if column == "config" else
                                    {"min_width": 8} if column in ("inputs", "atol/rtol") else
                                    {"min_width": 14} if column == "shape" else  # the op's words: may wrap
                                    {"no_wrap": True, "min_width": len("required")} if column == "tier" else
                                    {"no_wrap": True}))
    for c in matrix.configs:
        table.add_row(c.name, c.op, c.suite, c.tier, op_for(c).shape_text(c.dims),
                      ", ".join(c.inputs), f"{c.tolerance.atol:g}/{c.tolerance.rtol:g}")
    console.print(table, crop=False)  # columns that cannot shrink further widen the table rather than be cut off
    kernels = Table(title="kernels")
    for column in ("op", "kernel", "file", "when", "dispatch", "written for"):
        kernels.add_column(column)
    for k in matrix.kernels:
        kernels.add_row(k.op, k.name, k.file, k.when, ", ".join(k.dispatch),
                        " ".join(filter(None, (k.device_type, k.adapter_name and f"/{k.adapter_name}/"))) or "any")
    console.print(kernels)
    return verdict.OK
