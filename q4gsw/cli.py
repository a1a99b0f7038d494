"""Command line: python -m q4gsw {list,run,check,export,...}.

Exit codes (q4gsw/report/verdict.py, docs/results.md): 0 all selected cases passed, 1 any failed or nothing was
checked, 2 usage or matrix.toml error (nothing run), 130 interrupted (partial results written).

Environment: Q4GSW_CACHE the cache folder (fixtures, provisioned drivers); Q4GSW_PREWARM the cold-start
machinery of run, check, bench and mutants (warm GPU children started ahead of their fixtures): unset or 1 on,
0 off, see q4gsw/run/prewarm.py; an unknown value is a usage error (exit 2); Q4GSW_OPS_PATH folders of extra
op folders (docs/ops.md).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from q4gsw import __version__
from q4gsw.drift.baseline import add_baseline_options, run_baseline
from q4gsw.matrix.load import TIERS, Kernel, Matrix, MatrixError, check_runnable, load_matrix
from q4gsw.ops import OpFolderError
from q4gsw.report import verdict

if TYPE_CHECKING:
    from q4gsw.cases import Selection

# Subcommands implemented in their own module, each exposing main(argv) -> int.
EXTERNAL_COMMANDS = {"bench": "q4gsw.commands.bench", "ci-matrix": "q4gsw.commands.ci",
                     "report": "q4gsw.commands.report",
                     "audit": "q4gsw.commands.audit", "mutants": "q4gsw.commands.mutants",
                     "graph": "q4gsw.commands.graph"}


def _add_matrix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", default="matrix.toml", help="path to matrix.toml (default: ./matrix.toml)")


def _add_selection(parser: argparse.ArgumentParser, runs: bool = True) -> None:
    """The selection options; with `runs`, where fixtures are read and results written (export has neither)."""
    parser.add_argument("--tier", action="append", choices=TIERS,
                        help="tier(s) to run (default: required); configs of other tiers are reported as skipped")
    parser.add_argument("--suite", action="append", help="suite(s) to run (default: llama)")
    parser.add_argument("--config", action="append", default=[], metavar="NAME",
                        help="run only these configs (any tier); repeatable")
    parser.add_argument("--op", action="append", default=[], metavar="OP",
                        help="only this op's configs, every suite of it unless --suite; repeatable")
    if runs:  # not offered where they would be ignored: export writes into --out or the cache
        parser.add_argument("--fixtures", type=Path, help="run from fixtures exported with `q4gsw export --out DIR` "
                            "(needs only numpy + wgpu); otherwise fixtures are exported into the cache")
        parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results/)")
    parser.add_argument("--cache", type=Path, help="fixture cache (default: $Q4GSW_CACHE or ~/.cache/q4gsw)")
    parser.add_argument("--shard", type=_shard_arg, metavar="i/N",
                        help="run only shard i (1-based) of N cost-balanced shards of the selection (CI sharding)")
    parser.add_argument("--verbose", action="store_true",
                        help="show library output (torch warnings, partitioner and driver messages) as it happens")


def _shard_arg(text: str) -> tuple[int, int]:
    from q4gsw.commands.ci import ShardError, parse_shard

    try:
        return parse_shard(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m q4gsw", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"q4gsw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list configs x backends with tiers")
    _add_matrix(p)

    p = sub.add_parser("validate", help="check matrix.toml and exit (0 ok, 2 with the error)")
    _add_matrix(p)

    p = sub.add_parser("run", help="run the matrix on one backend")
    _add_matrix(p)
    p.add_argument("--backend", required=True)
    p.add_argument("--executorch", type=Path, metavar="PATH",
                   help="check ExecuTorch's own kernels from this checkout ([kernel_set.executorch] in the matrix), "
                        "routed as its runtime routes them, instead of q4gsw's kernels")
    p.add_argument("--all-variants", action="store_true",
                   help="with --executorch: check every variant whose preconditions hold, not only the routed one")
    p.add_argument("--in-process", action="store_true",
                   help="run the cases in this process, for debuggers and profilers: no child processes, no "
                        "export process, no warm spares; a driver crash or hang then ends the whole run")
    _add_selection(p)
    add_baseline_options(p)

    p = sub.add_parser("check", help="check a user's WGSL kernel (ExecuTorch binding layout) against the matrix")
    _add_matrix(p)
    p.add_argument("--kernel", required=True, type=Path, help="WGSL file with entry point `main`")
    p.add_argument("--dispatch", required=True, help='workgroup counts, e.g. "ceil(ceil(M/4)*ceil(N/4)/wg_size)"')
    p.add_argument("--override", action="append", default=[], metavar="NAME=VALUE",
                   help="pipeline-override constant (number or expression); repeatable")
    p.add_argument("--backend", required=True)
    _add_selection(p)
    add_baseline_options(p)

    p = sub.add_parser("export", help="export fixtures (needs torch, executorch, torchao)")
    _add_matrix(p)
    p.add_argument("--out", type=Path, help="write portable fixtures to DIR/<config>/ (default: the cache)")
    p.add_argument("--without-pte", action="store_true",
                   help="leave model.pte out of --out fixtures (running needs only the unpacked weights)")
    p.add_argument("--max-golden-mib", type=float,
                   help="leave out golden files larger than this; a run then recomputes them in fp64")
    _add_selection(p, runs=False)

    p = sub.add_parser("_export", help=argparse.SUPPRESS)
    _add_matrix(p)
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--cache", type=Path, required=True)

    p = sub.add_parser("_probe", help=argparse.SUPPRESS)
    p.add_argument("--backend-json", required=True)

    p = sub.add_parser("_child", help=argparse.SUPPRESS)
    p.add_argument("job", type=Path)

    p = sub.add_parser("_compile", help=argparse.SUPPRESS)
    p.add_argument("job")

    for name in EXTERNAL_COMMANDS:
        sub.add_parser(name, help=f"see `python -m q4gsw {name} --help`", add_help=False)
    return parser


def _parse_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise MatrixError("command line", "check", "--override", f"{item!r} is not NAME=VALUE",
                              "write e.g. --override wg_size=64")
        overrides[key.strip()] = value.strip()
    return overrides


def selection_from_args(matrix: Matrix, args: argparse.Namespace, kernels: tuple[Kernel, ...] | None = None,
                        applies: bool = True) -> Selection:
    """The one Selection of a command: names checked against the matrix, an empty result is a usage error."""
    from q4gsw.cases import build_selection, selects_nothing

    backend = getattr(args, "backend", None) or next(iter(matrix.backends))
    selection = build_selection(matrix, backend, tiers=args.tier, suites=args.suite, names=tuple(args.config),
                                kernels=kernels, shard=getattr(args, "shard", None), applies=applies,
                                ops=tuple(getattr(args, "op", ()) or ()))
    shard = getattr(args, "shard", None)
    if selection.is_empty() and shard is None:
        raise selects_nothing(matrix, args.command, tuple(args.config), tuple(getattr(args, "op", ()) or ()))
    if selection.is_empty():  # a CI shard with more shards than configs: not the user's mistake, but say why
        whole = build_selection(matrix, backend, tiers=args.tier, suites=args.suite, names=tuple(args.config),
                                kernels=kernels, applies=applies, ops=tuple(getattr(args, "op", ()) or ()))
        print(f"note: shard {shard[0]}/{shard[1]} runs nothing: the cost-balanced split dealt all "
              f"{len(whole.configs)} selected config(s) to the other shards", file=sys.stderr, flush=True)
    from q4gsw.sessions import rerun_options  # reproduce lines repeat the run's matrix, fixtures and checkout

    return selection.with_rerun(rerun_options(args.matrix, getattr(args, "fixtures", None),
                                              getattr(args, "executorch", None)))


def check_output_folder(path: Path, option: str, what: str = "results folder") -> None:
    """Before any work: the folder a command writes must be one q4gsw can write (exit 2 otherwise); `what` names
    it in the message as the command's help does (export's --out is not a results folder)."""
    from q4gsw.paths import unusable_folder

    problem = unusable_folder(path, what)
    if problem:
        raise MatrixError("command line", "output", option, problem, f"pass another {option}")


def cmd_run_kernel_set(matrix: Matrix, args: argparse.Namespace, checkout: Path) -> int:
    """run --executorch PATH: every kernel set (one per op) read from the checkout, routed as its runtime routes
    it. A set whose op folder the checkout lacks (an older ExecuTorch) is said and left out, unless that op was
    asked for by --op (a usage error); a required config of it named by --config fails."""
    from q4gsw.cases import Skip
    from q4gsw.export.kernel_sets import load_checkout
    from q4gsw.matrix.expressions import kernel_applies

    loaded_sets = load_checkout(matrix, checkout, tuple(getattr(args, "op", None) or ()))
    kernels = tuple(k for loaded in loaded_sets for k in loaded.kernels)
    selection = selection_from_args(matrix, args, kernels)
    routes = MappingProxyType({loaded.spec.op: loaded.spec.route for loaded in loaded_sets})  # each op its own
    selection = replace(selection, route=routes, all_variants=args.all_variants)
    selection = selection.filter_by_op({spec.op for spec in matrix.kernel_sets.values()},
                                       f"op {{op}} has no [kernel_set] in {matrix.path}: no ExecuTorch kernels of it")
    selection = selection.filter_by_op({loaded.spec.op for loaded in loaded_sets},
                                       f"op {{op}}: {checkout} has no kernels of it (an older ExecuTorch?)")
    # A required config named by --config is asked for: never silently skipped for a tree that lacks its op's
    # folder, it fails with the reason (an op with no kernel set has no ExecuTorch kernels to lack: still a skip).
    lacking = {spec.op for spec in matrix.kernel_sets.values()} - {loaded.spec.op for loaded in loaded_sets}
    selection = replace(selection, skipped=tuple(
        replace(s, status="fail", reason=f"required config '{s.config.name}' was asked for (--config), but {s.reason}")
        if s.config.name in args.config and s.config.tier == "required" and s.config.op in lacking
        and s.status == "skip" else s for s in selection.skipped))
    missing = [Skip(config, f"kernel '{kernel.name}' declared in [kernel_set.{loaded.spec.name}] is missing from the "
                            f"tree or unusable: {loaded.missing[kernel.name]}", kernel=kernel.name, status="fail")
               for loaded in loaded_sets for config in selection.configs for kernel in loaded.spec.kernels
               if kernel.name in loaded.missing and kernel_applies(kernel, config, selection.backend)]
    return cmd_run(matrix, args, selection=replace(selection, skipped=selection.skipped + tuple(missing)))


def cmd_run(matrix: Matrix, args: argparse.Namespace, kernels: tuple[Kernel, ...] | None = None,
            applies: bool = True, selection: Selection | None = None) -> int:
    from q4gsw.export.fixtures import default_cache_dir
    from q4gsw.run.exporter import FixtureSource
    from q4gsw.run.finish import run_and_report
    from q4gsw.run.stages import RunOptions

    selection = selection or selection_from_args(matrix, args, kernels, applies)
    if args.fixtures is not None and not args.fixtures.is_dir():
        raise MatrixError("command line", args.command, "--fixtures", f"{args.fixtures} is not a folder",
                          "pass a folder written by `python -m q4gsw export --out DIR`")
    check_output_folder(args.results, "--results")  # before any work: a run's results are never lost
    baseline = run_baseline(args)  # before any work too, into memory: it may be the --results folder it replaces
    # An unusable cache is not checked here: the engine fails every selected config with its reason.
    cache = args.cache or default_cache_dir()
    options = RunOptions(fixtures=FixtureSource(fixtures=args.fixtures, cache=cache, matrix_path=matrix.path),
                         in_process=getattr(args, "in_process", False))
    # The baseline's cases of other kinds of kernel (a `check` kernel, an ExecuTorch tree's) are outside this run.
    family = "check" if args.command == "check" else "executorch" if getattr(args, "executorch", None) else "matrix"
    return run_and_report(selection, options, matrix.root, args.results, matrix.path,
                          matrix_order=[c.name for c in matrix.configs], baseline=baseline, family=family)


def cmd_export(matrix: Matrix, args: argparse.Namespace) -> int:
    from q4gsw.export.fixtures import (
        GOLDEN_PREFIX,
        PTE_FILE,
        NotOurs,
        copy_fixture,
        default_cache_dir,
        ensure_fixture,
        refuse_unless_ours,
    )
    from q4gsw.paths import unusable_folder

    limit = args.max_golden_mib
    if limit is not None and not (math.isfinite(limit) and limit >= 0):  # nan compares false: kept every golden
        raise MatrixError("command line", "export", "--max-golden-mib", f"{limit!r} is not a size in MiB",
                          "pass a number >= 0, e.g. --max-golden-mib 64, or leave the option out to keep every golden")
    configs = selection_from_args(matrix, args).configs
    if args.out is not None:
        check_output_folder(args.out, "--out", "export output folder")
        for config in configs:  # every DIR/<config> checked before any export: nothing of the user's is replaced
            try:
                refuse_unless_ours(args.out / config.name)
            except NotOurs as exc:
                raise MatrixError("command line", f"config '{config.name}'", "--out", str(exc),
                                  "nothing was exported or removed") from None
    cache = args.cache or default_cache_dir()
    problem = unusable_folder(cache, "cache")  # export writes into the cache: checked before any work, like --out
    if problem:
        raise MatrixError("environment", "cache", "Q4GSW_CACHE / --cache", problem,
                          "nothing was exported; fix the cache location and run again")
    max_golden = None if args.max_golden_mib is None else args.max_golden_mib * 2**20
    from q4gsw.export.fixtures import quiet_library_output

    quiet_library_output()  # torch's warnings and the partitioner's INFO lines only with --verbose

    def keep(name: str, size: int) -> bool:
        if args.without_pte and name == PTE_FILE:
            return False
        return not (max_golden is not None and name.startswith(GOLDEN_PREFIX) and size > max_golden)

    failed = 0
    for config in configs:
        # Exported once into the cache, then copied: a second --out costs no re-export.
        try:
            fixture = ensure_fixture(config, cache)
            if args.out is not None:
                fixture = copy_fixture(fixture, args.out / config.name, keep)
        except NotOurs as exc:  # appeared since the check above
            raise MatrixError("command line", f"config '{config.name}'", "--out", str(exc),
                              "nothing of yours was removed") from None
        except Exception as exc:  # this config fails with its reason; the next one is still exported
            failed += 1
            print(f"error: export of '{config.name}' failed: {type(exc).__name__}: "
                  f"{' | '.join(str(exc).splitlines()[-3:])}", file=sys.stderr, flush=True)
            continue
        omitted = ", ".join(fixture.manifest.get("omitted", {})) or "nothing"
        print(f"{config.name}: {fixture.path} (left out: {omitted})", flush=True)
    return verdict.FAILED if failed else verdict.OK


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except OpFolderError as exc:  # an op folder every command would find broken: one line naming it
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE


def _main(argv: list[str]) -> int:
    if argv and argv[0] in RUNNING_COMMANDS:
        from q4gsw.run.stages import prewarm_switch_error

        problem = prewarm_switch_error()
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return verdict.USAGE
    if argv and argv[0] in EXTERNAL_COMMANDS:
        try:
            return int(importlib.import_module(EXTERNAL_COMMANDS[argv[0]]).main(argv[1:]))
        except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback from wherever the command was waiting
            print(f"\ninterrupted: {argv[0]} stopped; what it writes at its end was not written", file=sys.stderr)
            return verdict.INTERRUPTED
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in CHILD_COMMANDS:
        from q4gsw.run.workers import internal_command

        return internal_command(args)
    if getattr(args, "verbose", False):
        os.environ["Q4GSW_VERBOSE"] = "1"
    try:
        matrix = load_matrix(args.matrix)
        if args.command == "list":
            from q4gsw.commands.listing import cmd_list

            return cmd_list(matrix)
        if args.command == "validate":
            check_runnable(matrix)
            print(f"{matrix.path}: ok ({len(matrix.configs)} configs, {len(matrix.kernels)} kernels, "
                  f"{len(matrix.backends)} backends)")
            return verdict.OK
        if args.command == "run" and args.executorch is not None:
            return cmd_run_kernel_set(matrix, args, args.executorch)
        if args.command == "run":
            if args.all_variants:
                raise MatrixError("command line", "run", "--all-variants", "needs --executorch PATH",
                                  "add --executorch PATH (the kernel set whose variants to check)")
            return cmd_run(matrix, args)
        if args.command == "check":
            matrix.backend(args.backend)
            return cmd_run(matrix, args, (_user_kernel(args),), applies=False)
        if args.command == "export":
            return cmd_export(matrix, args)
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    except KeyboardInterrupt:
        return verdict.INTERRUPTED
    parser.error(f"unknown command {args.command}")
    return verdict.USAGE


CHILD_COMMANDS = ("_export", "_probe", "_child", "_compile")
RUNNING_COMMANDS = ("run", "check", "bench", "mutants")  # those that read Q4GSW_PREWARM


def _user_kernel(args: argparse.Namespace) -> Kernel:
    from q4gsw.matrix.load import make_kernel

    try:  # read here, not first in the run's child, where a file that is not UTF-8 crashed it
        args.kernel.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ("is a folder, not a file" if args.kernel.is_dir() else "no such file" if not args.kernel.exists()
                   else f"cannot be read as UTF-8 text ({type(exc).__name__}: {exc})")
        raise MatrixError("command line", "check", "--kernel", f"{args.kernel}: {problem}",
                          "pass the path of a .wgsl file (UTF-8 text)") from None
    kernel = make_kernel(args.kernel.stem, str(args.kernel.resolve()), args.dispatch,
                         overrides=_parse_overrides(args.override), origin=f"check:{args.kernel.resolve()}")
    _validate_user_kernel(kernel)
    return kernel


def _validate_user_kernel(kernel: Kernel) -> None:
    from q4gsw.matrix.expressions import environment, evaluate
    from q4gsw.ops import placeholder_names

    names = environment(shape := placeholder_names(kernel.op), None)
    for key, value in kernel.overrides.items():
        try:
            names[key] = evaluate(value, names)
        except Exception as exc:
            raise MatrixError("command line", "check", f"--override {key}", f"bad expression {value!r}: {exc}",
                              f"use a number or an expression over {', '.join(shape)} and adapter limits") from exc
    parts = kernel.dispatch
    if not 1 <= len(parts) <= 3:
        raise MatrixError("command line", "check", "--dispatch", f"needs 1 to 3 counts, got {len(parts)}",
                          'write "X", "X, Y" or "X, Y, Z"')
    for part in parts:
        try:
            evaluate(part, names)
        except Exception as exc:
            raise MatrixError("command line", "check", "--dispatch", f"bad expression {part!r}: {exc}",
                              f"use arithmetic over {', '.join(shape)}, overrides, limits, ceil/min/max") from exc
