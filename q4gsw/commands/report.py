"""`python -m q4gsw report DIR [DIR ...] [--out DIR]`: re-render or merge reports from results.json files.

Each DIR is a results folder (DIR/results.json), a results.json file, or a folder searched
recursively for results.json (e.g. the downloaded artifacts of every CI job). One DIR without --out
re-renders junit.xml, summary.md and plots/ in place; several are merged into one table in --out
(default results/merged), with a merged results.json. With --baseline OLD, the results are compared with another
run's case by case (q4gsw.drift.rule): the console, summary.md and junit.xml list what moved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from q4gsw.drift.baseline import BaselineError, LoneGateOption, add_baseline_options, baseline_from_args
from q4gsw.report import verdict
from q4gsw.report.junit import case_label
from q4gsw.report.result import Result
from q4gsw.report.results_files import ReportError, find_results, load_all

DEFAULT_MERGED = Path("results/merged")


def merge(results: list[Result]) -> list[Result]:
    """Drop repeated skip/unsupported rows of the same case (e.g. reported by several shards)."""
    seen: set[tuple[str, str, str, str]] = set()
    merged = []
    for r in results:
        if r.status in ("skip", "unsupported"):
            key = (case_label(r), r.webgpu, r.status, r.message)
            if key in seen:
                continue
            seen.add(key)
        merged.append(r)
    return merged


def merged_meta(metas: list[dict[str, Any]]) -> dict[str, Any]:
    if len(metas) == 1:
        return {k: v for k, v in metas[0].items() if k != "path"}
    walls = [m["wall_s"] for m in metas if isinstance(m.get("wall_s"), int | float)]
    versions = sorted({str(m["q4gsw_version"]) for m in metas if m.get("q4gsw_version")})
    return {"q4gsw_version": ", ".join(versions), "command": " ".join(sys.argv),
            "backends": sorted({str(m.get("backend")) for m in metas if m.get("backend")}),
            "wall_s": sum(walls), "interrupted": any(m.get("interrupted") for m in metas),
            "merged_from": [{"path": m["path"], "backend": m.get("backend"), "command": m.get("command"),
                             "host": m.get("host"), "started": m.get("started")} for m in metas]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m q4gsw report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path, metavar="DIR",
                        help="results folder(s), results.json file(s), or folders to search for results.json")
    parser.add_argument("--out", type=Path, help="output folder (default: the one DIR in place, or results/merged)")
    parser.add_argument("--title", help="summary heading (default: q4gsw accuracy: <backends>)")
    parser.add_argument("--no-step-summary", action="store_true", help="do not append to $GITHUB_STEP_SUMMARY")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the merged results fail a run by run's own rules (q4gsw.report.verdict): "
                             "a failed "
                             "case, no passed case, an interrupted run, or a required config that ran no case on a "
                             "backend it was selected for; without it the exit code is 0 once the reports are written")
    parser.add_argument("--quiet", action="store_true", help="do not print the results table")
    parser.add_argument("--versions", action="store_true",
                        help="the DIRs are runs of one selection through several releases of a WebGPU implementation "
                             "(the versions-* sessions): write the version x case table and what moved release "
                             "after release (versions.md, versions.json in --out; docs/versions.md)")
    parser.add_argument("--bench", nargs="+", type=Path, default=[], metavar="BENCH.json",
                        help="with --versions: one bench JSON per release (`q4gsw bench --json`): the speed too")
    add_baseline_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from q4gsw.report.result import ReportNotWritten, summary_line
    from q4gsw.report.write import make_console, print_report, write_run_outputs

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.versions or args.bench:
        return versions_report(args)
    try:
        paths = find_results(args.sources)
        results, metas = load_all(paths)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    try:
        baseline = baseline_from_args(args)
    except BaselineError as exc:
        print(f"error: --baseline {exc}", file=sys.stderr)
        return verdict.USAGE
    except LoneGateOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    if args.accept_new:  # Comparison.all_new: a measured baseline case missing now is never 'all new'
        print("error: --accept-new does not apply to report: report compares every case of the --baseline, so a "
              "run of only new cases leaves the baseline's cases missing (REMOVED) and its gate can never hold; "
              "compare a shard with `run --baseline OLD --accept-new`, or drop --accept-new", file=sys.stderr)
        return verdict.USAGE
    results = merge(results)
    meta = merged_meta(metas)
    if args.out is not None:
        out = args.out
    elif len(paths) == 1:
        out = paths[0].parent
    else:
        out = DEFAULT_MERGED
    in_place = len(paths) == 1 and out.resolve() == paths[0].parent.resolve()
    try:
        check_output(out, [*paths, *(baseline.sources if baseline else ())], write_json=not in_place)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    comparison, problem = None, ""
    if baseline is not None:
        from q4gsw.drift.baseline import diff_with

        comparison, problem = diff_with(baseline, results)
    fail_on_drift = baseline is not None and baseline.fail_on_drift
    try:
        write_run_outputs(out, results, meta, write_json=not in_place, step_summary=not args.no_step_summary,
                          title=args.title, comparison=comparison, fail_on_drift=fail_on_drift)
    except ReportNotWritten as exc:  # the merged reports are this command's product
        print(f"error: {exc}", file=sys.stderr)
        return verdict.FAILED
    if not args.quiet:
        print_report(results)
    else:
        print(summary_line(results), flush=True)
    from q4gsw.drift.report import show_comparison

    drifted = show_comparison(comparison, problem, fail_on_drift, make_console())
    print(f"report: {out} ({len(paths)} results.json: {', '.join(str(p) for p in paths)})", file=sys.stderr)
    if not args.strict:
        return verdict.with_drift(verdict.OK, drifted, fail_on_drift)
    problems = strict_problems(results, metas)
    for problem in problems:
        print(f"strict: {problem}", file=sys.stderr)
    return verdict.with_drift(verdict.FAILED if problems else verdict.OK, drifted, fail_on_drift)


def versions_report(args: argparse.Namespace) -> int:
    """`report --versions`: the version x case table of the runs (q4gsw.drift.versions); with --fail-on-drift,
    exit 1 when a step between two releases fails the gate of `--baseline` (drifted, stopped passing, removed)."""
    from q4gsw.drift import versions
    from q4gsw.report.result import ReportNotWritten
    from q4gsw.report.summary import append_step_summary

    problem = ("--bench needs --versions" if not args.versions else
               "--baseline does not apply to --versions (each release is compared with the previous one)"
               if args.baseline is not None else "")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return verdict.USAGE
    out = args.out or DEFAULT_MERGED.with_name("versions")
    try:
        paths = find_results(args.sources)
        releases = versions.read_releases(paths)
        if len(releases) < 2:
            raise ReportError(f"{', '.join(map(str, paths))}: runs of {len(releases)} release(s): --versions "
                              "compares runs of two or more releases (e.g. results/versions-*)")
        benches = versions.read_bench_runs(args.bench, releases)
        found = versions.steps(releases, args.drift_factor, benches, args.accept_removed)
        problem = versions.unbenched(found, benches)
        if problem:
            raise ReportError(problem)
        check_output(out, paths, write_json=False)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    try:
        text = versions.write(out, releases, found, args.fail_on_drift)
    except ReportNotWritten as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.FAILED
    if not args.no_step_summary:
        append_step_summary(text)
    if not args.quiet:
        print(text)
    print(f"versions: {out / 'versions.md'} ({len(releases)} releases)", file=sys.stderr)
    gate = [f"{s.old.package} -> {s.new.package}: {line}" for s in found for line in s.gate]
    gate += versions.wrong_rows(benches)
    if not found:  # releases of different packages only: each is compared with nothing
        gate.append(f"NOTHING COMPARED: no two releases of one package ({', '.join(r.package for r in releases)}): "
                    "each release is compared with the previous release of its package")
    if args.fail_on_drift:
        for line in gate:
            print(f"gate: {line}", file=sys.stderr)
    return verdict.with_drift(verdict.OK, len(gate), args.fail_on_drift)


OUTPUT_FILES = ("results.json", "junit.xml", "summary.md")


def check_output(out: Path, inputs: list[Path], write_json: bool) -> None:
    """Before writing anything: `out` is a folder q4gsw can write, and no file written there is an input."""
    from q4gsw.paths import unusable_folder

    written = {(out / name).resolve() for name in OUTPUT_FILES if write_json or name != "results.json"}
    for path in inputs:
        if path.resolve() in written:
            raise ReportError(f"--out {out} would overwrite the input {path}: choose another --out "
                              "(a merge never overwrites what it reads)")
    problem = unusable_folder(out, "report folder")
    if problem:
        raise ReportError(f"--out: {problem}")


def strict_problems(results: list[Result], metas: list[dict[str, Any]]) -> list[str]:
    """Why --strict fails, with run's own rules (q4gsw.report.verdict): a failed case, no case that passed, an
    interrupted
    run, or a required config selected on a backend (it has an unsupported row there) none of whose cases ran
    there. A required config skipped there (another tier's job) is not one."""
    problems = verdict.problems(results)
    interrupted = [str(m.get("path")) for m in metas if m.get("interrupted")]
    if interrupted:
        problems.append(f"interrupted run(s), results incomplete: {', '.join(interrupted)}")
    selected = sorted({(r.config, r.backend) for r in results if r.tier == "required" and r.status == "unsupported"})
    problems += [f"required config '{config}' ran no case on '{backend}'"
                 for config, backend in verdict.required_not_run(results, selected)]
    return problems
