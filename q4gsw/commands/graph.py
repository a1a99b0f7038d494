"""`python -m q4gsw graph PTE`: the calls a .pte's Vulkan delegate runs, in order, and which op of q4gsw checks each.

A composed model (a decoder layer exported with ExecuTorch's Llama recipe, docs/layer.md) runs a chain of calls;
q4gsw can compose it only from ops it knows. This lists the chain with each call's tensor arguments and the op
that covers it (its `operator`, or an operator its chain runs first: `Op.also_runs`), and counts the calls no op
covers, each as `unsupported: op NAME` — the list a composed run would stop on, never skipped in silence.
Exit codes: 0 every call is covered, 1 some are not (each listed), 2 the file is not a .pte q4gsw can read.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from q4gsw.export.pte import Call, UnreadablePte, constants_from_foreign_pte, read_delegate
from q4gsw.ops import registry
from q4gsw.report import verdict


def covering_ops() -> dict[str, str]:
    """delegate operator -> the q4gsw op that checks it."""
    found: dict[str, str] = {}
    for name, op in registry().items():
        for operator in (op.operator, *op.also_runs):
            found.setdefault(operator, name)
    return found


def coverage_lines(calls: tuple[Call, ...], covered: dict[str, str]) -> tuple[list[str], Counter[str]]:
    """(one line per call, the count of each operator no op covers)."""
    lines, missing = [], Counter()
    for index, call in enumerate(calls):
        op = covered.get(call.operator)
        if op is None:
            missing[call.operator] += 1
        who = op or f"unsupported: op {call.operator}"
        lines.append(f"{index:3d}  {call.operator:44s} {' '.join(a.text() for a in call.args):70s} {who}")
    return lines, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m q4gsw graph", description=__doc__.splitlines()[0])
    parser.add_argument("pte", type=Path, help="an ExecuTorch .pte with one Vulkan delegate")
    args = parser.parse_args(argv)
    if not args.pte.exists():
        print(f"q4gsw graph: {args.pte}: no such file: give the path of a .pte", file=sys.stderr)
        return verdict.USAGE
    try:
        calls = constants_from_foreign_pte(args.pte, lambda data: read_delegate(data).calls())
    except UnreadablePte as exc:
        print(f"q4gsw graph: {exc}", file=sys.stderr)
        return verdict.USAGE
    lines, missing = coverage_lines(calls, covering_ops())
    print(f"{args.pte}: {len(calls)} calls in its Vulkan delegate")
    print("\n".join(lines))
    if not calls:
        print("no call: nothing a composed run could check", file=sys.stderr)
        return verdict.FAILED
    if missing:
        print(f"{sum(missing.values())} of {len(calls)} calls have no q4gsw op: " +
              ", ".join(f"unsupported: op {name} x{count}" for name, count in missing.most_common()))
        return verdict.FAILED
    print("every call is covered by a q4gsw op")
    return verdict.OK
