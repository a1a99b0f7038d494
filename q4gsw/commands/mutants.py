"""Mutation self-test: does the matrix catch wrong-but-plausible kernels of an op?

`python -m q4gsw mutants [--backend swiftshader] [--op OP]` takes the op's simple, correct
one-invocation-per-output kernel and its catalogue of mutants (Op.mutation_suite: for linear_q4gsw,
q4gsw/ops/linear_q4gsw/mutants.py, each mutant a bug a real kernel author makes) and runs every
mutant, the reference and the kernels declared in matrix.toml through the same fixtures, goldens and
comparison as `run`/`check`, on the required configs of the op. It prints a kill matrix (mutant x
config x input) and exits 0 only if every mutant is killed by at least one config and no correct
kernel fails (zero false alarms).

Each config runs in its own child process (like `run`), which loads the fixture once and runs all
kernels there, so a crash or hang fails that config, not the whole self-test.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from q4gsw.matrix.checker import MatrixError, suggest
from q4gsw.matrix.values import DEFAULT_OP
from q4gsw.ops import op_for
from q4gsw.ops.base import Mutant, MutationSuite
from q4gsw.report import verdict

DEFAULT_SUITES = ("llama", "edges")
DEFAULT_MAX_GFLOP = 1.0  # one-invocation-per-output kernels run at ~0.5 GFLOP/s on SwiftShader


def suite_of(op_name: str = DEFAULT_OP) -> MutationSuite:
    suite = op_for(op_name).mutation_suite()
    if suite is None:
        raise MatrixError("command line", "mutants", "--op", f"op '{op_name}' has no mutation suite yet",
                          "choose an op with one (see `python -m q4gsw mutants --list`)")
    return suite


def mutant_sources(reference: str | None = None, op_name: str = DEFAULT_OP) -> dict[str, str]:
    """name -> WGSL for every mutant of the op (of the kernel it edits: the reference, or the `before` reference
    for Mutant.in_before); raises if an edit no longer matches its kernel."""
    suite = suite_of(op_name)
    reference = suite.reference.read_text() if reference is None else reference
    chain = [b.file.read_text() for b in suite.chain]
    return {m.name: m.source(reference if (i := suite.edited(m)) is None else chain[i]) for m in suite.mutants}


def mutant_kernels(wanted: tuple[str, ...] = (), op_name: str = DEFAULT_OP) -> list[Any]:
    """The op's reference kernel and its mutants, each a Kernel (text = the mutated WGSL); with a `before`
    reference, each runs after it (a mutant of the `before` kernel runs the reference after its mutated text)."""
    from q4gsw.matrix.load import make_kernel

    suite = suite_of(op_name)
    reference = suite.reference.read_text()
    path = str(suite.reference)

    def before(texts: list[str], origin: str) -> Any:
        """The chain's kernels (these texts), each the `before` of the next; the last one's returned."""
        last = None
        for first, text in zip(suite.chain, texts, strict=True):
            suffix = "-before" if len(suite.chain) == 1 else f"-{first.name}"
            last = make_kernel(f"{origin}{suffix}", str(first.file), first.dispatch, overrides=first.overrides,
                               op=op_name, text=text, origin=origin, before=last, stage=first.stage)
        return last

    chain = [b.file.read_text() for b in suite.chain]
    kernels = [make_kernel("reference", path, suite.dispatch, overrides=suite.overrides, op=op_name,
                           text=reference, origin=f"mutant-reference:{suite.reference.name}",
                           before=before(chain, "mutant-reference"), stage=suite.stage)]
    for mutant in suite.mutants:
        if not wanted or mutant.name in wanted:
            edited = suite.edited(mutant)
            texts = [mutant.source(t) if i == edited else t for i, t in enumerate(chain)]
            kernels.append(make_kernel(mutant.name, path, suite.dispatch, overrides=suite.overrides, op=op_name,
                                       text=reference if edited is not None else mutant.source(reference),
                                       origin=f"mutant:{mutant.name}", before=before(texts, f"mutant:{mutant.name}"),
                                       stage=suite.stage))
    return kernels


def records_of(results: list[Any]) -> list[dict[str, Any]]:
    """Kill-matrix records from the engine's Results (a kernel that did not compile is an error, never a kill)."""
    records = []
    for r in results:
        if not r.kernel:
            continue
        status = "error" if r.status == "fail" and r.errors is None else r.status
        record = {"config": r.config, "input": r.input, "kernel": r.kernel,
                  "role": "mutant" if r.role == "mutant" else "correct",
                  "adapter": r.adapter.name if r.adapter else "", "status": status, "message": r.message}
        if r.errors is not None and r.tolerance is not None:
            record.update(atol=r.tolerance.atol, rtol=r.tolerance.rtol, max_abs=r.errors.max_abs,
                          headroom=r.errors.headroom, mismatches=r.errors.mismatches, elements=r.errors.elements)
        records.append(record)
    return records


# ------------------------------------------------------------------------------------------------
# Parent: select configs, prepare fixtures, one child per config, kill matrix
# ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from q4gsw.matrix.load import TIERS

    parser = argparse.ArgumentParser(prog="python -m q4gsw mutants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default="matrix.toml")
    parser.add_argument("--backend", default="swiftshader")
    parser.add_argument("--op", action="append", default=[], metavar="OP",
                        help=f"the op(s) whose mutants run, or `all` (default {DEFAULT_OP}); with several, each op's "
                             "results go to RESULTS/<op>/")
    parser.add_argument("--tier", action="append", choices=TIERS, help="tiers (default: required)")
    parser.add_argument("--suite", action="append",
                        help=f"suites (default: {', '.join(DEFAULT_SUITES)} for {DEFAULT_OP}; another op: all)")
    parser.add_argument("--config", action="append", default=[], metavar="NAME",
                        help="only these configs (any tier, any size); repeatable")
    parser.add_argument("--mutant", action="append", default=[], metavar="NAME", help="only these mutants")
    parser.add_argument("--max-gflop", type=float, default=DEFAULT_MAX_GFLOP,
                        help=f"skip selected configs above this many GFLOP (default {DEFAULT_MAX_GFLOP:g}; the "
                             "one-invocation-per-output kernels would take minutes on the 4k prefill shapes)")
    parser.add_argument("--no-matrix-kernels", action="store_true",
                        help="do not run the matrix.toml kernels as correct kernels (the reference still runs)")
    parser.add_argument("--fixtures", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--results", type=Path, default=Path("results/mutants"))
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    return parser


def kill_summary(records: list[dict[str, Any]], op_name: str = DEFAULT_OP) -> dict[str, Any]:
    """Per mutant: killing cases; per correct kernel: failures; overall verdict."""
    mutants = [m.name for m in suite_of(op_name).mutants if any(r["kernel"] == m.name for r in records)]
    killed_by: dict[str, list[str]] = {m: [] for m in mutants}
    errors: list[dict[str, Any]] = []
    false_alarms: list[dict[str, Any]] = []
    for r in records:
        case = f"{r['config']}/{r['input']}"
        if r["status"] == "error":
            errors.append(r)
        elif r["role"] == "mutant" and r["status"] == "fail":
            killed_by[r["kernel"]].append(case)
        elif r["role"] == "correct" and r["status"] == "fail":
            false_alarms.append(r)
    cells = [r for r in records if r["role"] == "mutant" and r["status"] in ("pass", "fail")]
    equivalent = _equivalent_survivors([m for m, cases in killed_by.items() if not cases], cells, op_name)
    survivors = [m for m, cases in killed_by.items() if not cases and m not in equivalent]
    return {"mutants": len(mutants), "killed": len(mutants) - len(survivors) - len(equivalent), "survivors": survivors,
            "equivalent": equivalent,
            "killed_by": killed_by, "cells": len(cells), "cells_killing": sum(r["status"] == "fail" for r in cells),
            "false_alarms": false_alarms, "errors": errors,
            "ok": not survivors and not false_alarms and not errors and bool(mutants)}


def _equivalent_survivors(survivors: list[str], cells: list[dict[str, Any]], op_name: str) -> dict[str, str]:
    """Survivors that ran only on adapters where the catalogue says they are equivalent (Mutant.equivalent_on: the
    compiler there computes the reference's numbers from the mutated text), each with the reason."""
    catalogue = {m.name: m for m in suite_of(op_name).mutants}
    equivalent = {}
    for name in survivors:
        reasons = {catalogue[name].equivalent_reason(r.get("adapter", "")) for r in cells if r["kernel"] == name}
        if reasons and "" not in reasons:
            equivalent[name] = "; ".join(sorted(reasons))
    return equivalent


def print_kill_matrix(records: list[dict[str, Any]], summary: dict[str, Any], catalogue: tuple[Mutant, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    cases = list(dict.fromkeys(f"{r['config']}/{r['input']}" for r in records))
    by_key = {(r["kernel"], f"{r['config']}/{r['input']}"): r for r in records}
    symbols = {"fail": "[green]K[/]", "pass": "[red]·[/]", "error": "[yellow]E[/]", "unsupported": "u"}
    correct_symbols = {"pass": "[green]ok[/]", "fail": "[red]FAIL[/]", "error": "[yellow]E[/]", "unsupported": "u"}
    table = Table(title="kill matrix (K = killed, · = survived; correct kernels: ok / FAIL)", show_lines=False)
    table.add_column("kernel")
    for case in cases:
        table.add_column(case.replace("/", "\n"), justify="center")
    table.add_column("kills", justify="right")
    kernels = list(dict.fromkeys(r["kernel"] for r in records))
    for kernel in kernels:
        role = next(r["role"] for r in records if r["kernel"] == kernel)
        row = []
        for case in cases:
            r = by_key.get((kernel, case))
            row.append("" if r is None else (symbols if role == "mutant" else correct_symbols)[r["status"]])
        kills = sum(1 for c in cases if (kernel, c) in by_key and by_key[(kernel, c)]["status"] == "fail")
        label = kernel if role == "mutant" else f"[bold]{kernel}[/] (correct)"
        table.add_row(label, *row, str(kills) if role == "mutant" else "")
    console = Console(width=max(120, 14 + 12 * len(cases)))
    console.print(table)
    line = (f"{summary['killed']}/{summary['mutants']} mutants killed "
            f"({summary['cells_killing']}/{summary['cells']} mutant x case cells fail), "
            + (f"{len(summary['equivalent'])} equivalent on this adapter, " if summary["equivalent"] else "")
            + f"{len(summary['false_alarms'])} false alarms, {len(summary['errors'])} errors")
    console.print(line)
    for name, why in summary["equivalent"].items():
        console.print(f"[yellow]EQUIVALENT[/] {name} on this adapter (not a gap in the matrix): {why}")
    for name in summary["survivors"]:
        bug = next(m.bug for m in catalogue if m.name == name)
        console.print(f"[red]SURVIVOR[/] {name}: {bug} — add a config or input that exposes it")
    for r in summary["false_alarms"]:
        console.print(f"[red]FALSE ALARM[/] {r['kernel']} on {r['config']}/{r['input']}: {r['message']}")
    for r in summary["errors"]:
        console.print(f"[yellow]ERROR[/] {r['kernel']} on {r['config']}/{r['input']}: {r['message'][:300]}")


def _options_problem(args: argparse.Namespace) -> str:
    """Before any work, as `run` checks them: a --fixtures folder that is not one (every config then failed in its
    child), a --max-gflop that is no size (nan or <= 0 selected nothing, said as if the selection were empty)."""
    if args.fixtures is not None and not args.fixtures.is_dir():
        return str(MatrixError("command line", "mutants", "--fixtures", f"{args.fixtures} is not a folder",
                               "pass a folder written by `python -m q4gsw export --out DIR`"))
    if not (math.isfinite(args.max_gflop) and args.max_gflop > 0):
        return str(MatrixError("command line", "mutants", "--max-gflop", f"{args.max_gflop:g} is not a GFLOP count",
                               f"pass a number > 0 (default {DEFAULT_MAX_GFLOP:g})"))
    return ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from q4gsw.ops import registry

    ops = list(dict.fromkeys(args.op or [DEFAULT_OP]))
    for name in ops:  # before any work, as `run --op` does: an unknown op is a usage error, not a KeyError
        if name != "all" and name not in registry():
            known = ["all", *sorted(registry())]
            error = MatrixError("command line", "mutants", "--op", f"unknown op '{name}'",
                                f"{suggest(name, known)}choose from {', '.join(known)}")
            print(f"error: {error}", file=sys.stderr)
            return verdict.USAGE
    problem = _options_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return verdict.USAGE
    if "all" in ops:  # a mutation suite is optional: an op without one is said, not checked
        without = [name for name, op in registry().items() if op.mutation_suite() is None]
        if without:
            print(f"mutants: no mutation suite (Op.mutation_suite) in op {', '.join(without)}: not checked", flush=True)
        ops = [name for name in registry() if name not in without]
    if len(ops) == 1:
        return main_one(args, ops[0], args.results)
    if args.mutant or args.list:
        print("error: --mutant and --list take one --op", file=sys.stderr)
        return verdict.USAGE
    codes = {}
    for op_name in ops:  # every op runs, whatever an earlier one found; the worst exit code is the verdict
        print(f"== mutants of op {op_name}", flush=True)
        codes[op_name] = main_one(args, op_name, args.results / op_name)
    print("mutants: " + ", ".join(f"{op} {'ok' if code == verdict.OK else 'FAILED'}" for op, code in codes.items()),
          flush=True)
    return max(codes.values())


def main_one(args: argparse.Namespace, op_name: str, results: Path) -> int:
    from q4gsw.cases import build_selection
    from q4gsw.matrix.load import load_matrix

    try:
        catalogue = suite_of(op_name).mutants
        if args.list:
            for m in catalogue:
                print(f"{m.name:22s} {m.bug}")
            return verdict.OK
        for name in args.mutant:
            if name not in {m.name for m in catalogue}:
                raise MatrixError("command line", "mutants", "--mutant", f"no such mutant '{name}'",
                                  f"see `python -m q4gsw mutants --op {op_name} --list`")
        matrix = load_matrix(args.matrix)
        kernels = mutant_kernels(tuple(args.mutant), op_name)  # fails fast if the reference no longer matches an edit
        roles = {k.name: "mutant" if k.name != "reference" else "reference" for k in kernels}
        if not args.no_matrix_kernels:
            kernels += [k for k in matrix.kernels if k.op == op_name]
            roles.update({k.name: "reference" for k in matrix.kernels})
        # A default is no typo: the default op's default suites where it has them; another op's every suite.
        defaults = [s for s in DEFAULT_SUITES if any(c.suite == s and c.op == op_name for c in matrix.configs)]
        selection = build_selection(matrix, args.backend, tiers=args.tier, suites=args.suite or defaults or None,
                                    names=tuple(args.config), kernels=tuple(kernels), roles=roles,
                                    max_gflop=None if args.config else args.max_gflop, ops=(op_name,))
        if selection.is_empty():
            raise MatrixError("command line", "mutants", "--config/--suite/--tier/--max-gflop",
                              f"selects no config of op {op_name}", "see `python -m q4gsw list`")
        from q4gsw.paths import unusable_folder

        problem = unusable_folder(results, "results folder")  # before any work: the results are never lost
        if problem:
            raise MatrixError("command line", "mutants", "--results", problem, "pass another --results")
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    return run_parent(matrix, args, selection, op_name, results)


def run_parent(matrix: Any, args: argparse.Namespace, selection: Any, op_name: str, results_folder: Path) -> int:
    from q4gsw.export.fixtures import default_cache_dir
    from q4gsw.report.result import ReportNotWritten, replace_file
    from q4gsw.run.exporter import FixtureSource
    from q4gsw.run.stages import RunOptions, run_selection

    started = time.perf_counter()
    for skip in selection.skipped:
        print(f"not run: {skip.config.name} ({skip.reason})", flush=True)
    options = RunOptions(fixtures=FixtureSource(fixtures=args.fixtures, cache=args.cache or default_cache_dir(),
                                                matrix_path=matrix.path))
    results = run_selection(selection, options, matrix.root)
    records = records_of(results)
    ran = {r["config"] for r in records}
    problems = [f"{r.config}: {r.message}" for r in results
                if r.status == "fail" and (not r.kernel or r.config not in ran)]
    summary = kill_summary(records, op_name)
    catalogue = suite_of(op_name).mutants
    print_kill_matrix(records, summary, catalogue)
    for problem in problems:
        print(f"PROBLEM {problem}", flush=True)
    results_folder.mkdir(parents=True, exist_ok=True)
    payload = {"backend": selection.backend.name, "webgpu": selection.backend.webgpu,
               "wall_s": time.perf_counter() - started, "configs": [c.name for c in selection.configs],
               "not_run": {s.config.name: s.reason for s in selection.skipped},
               "op": op_name, "catalogue": [{"name": m.name, "bug": m.bug} for m in catalogue],
               "summary": {k: v for k, v in summary.items() if k not in ("false_alarms", "errors")},
               "false_alarms": summary["false_alarms"], "errors": summary["errors"], "problems": problems,
               "records": records}
    path = results_folder / "mutants.json"
    try:  # whole or not at all: a full disk leaves the previous mutants.json as it was, and says so
        replace_file(path, json.dumps(payload, indent=2, default=str).encode("utf-8"))
    except ReportNotWritten as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return verdict.FAILED
    print(f"results: {path} (wall {payload['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    return verdict.OK if summary["ok"] and not problems else verdict.FAILED
