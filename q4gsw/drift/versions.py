"""`report --versions RUN [RUN ...]`: one selection run through several releases of a WebGPU implementation (the
versions-* sessions, docs/versions.md) as a version × case table, and release after release what changed.

Each RUN is a results folder or results.json of one release (its package version is recorded in every result's
adapter and in the run's meta: "wgpudawn==0.32.0.4"); runs of the same release (shards) are joined. Releases are
ordered by package, then version. Each release is compared with the previous release of the same package by the
drift rule of `--baseline` (q4gsw.drift.rule.diff_runs: status changes, max and median |err| beyond the factor), and
with `--bench` JSONs (`q4gsw bench --json`, one per release) by the bench rule (q4gsw.drift.bench.diff_bench).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from q4gsw.drift.bench import BenchComparison, diff_bench
from q4gsw.drift.bench import markdown as bench_markdown
from q4gsw.drift.report import markdown_section
from q4gsw.drift.rule import DEFAULT_FACTOR, Comparison, case_key, diff_runs
from q4gsw.report.junit import case_name
from q4gsw.report.result import Result, format_number, read_results
from q4gsw.report.results_files import ReportError
from q4gsw.report.summary import STATUS_MARK, cell


@dataclass(frozen=True)
class Release:
    """The runs of one release: its exact package, the native build and the driver(s) its results recorded."""

    package: str  # "wgpudawn==0.32.0.4"
    build: str
    driver: str
    sources: tuple[str, ...]
    results: tuple[Result, ...]

    @property
    def name(self) -> str:
        return self.package.split("==")[0]

    @property
    def version(self) -> str:
        return self.package.split("==")[-1]


@dataclass(frozen=True)
class Step:
    """A release compared with the previous release of its package."""

    old: Release
    new: Release
    comparison: Comparison
    bench: BenchComparison | None = None
    accept_removed: bool = False

    @property
    def gate(self) -> list[str]:
        """Why this step fails --fail-on-drift: the gate of `--baseline` (drifted, stopped passing, removed, nothing
        compared) and, with bench JSONs, of `bench --baseline` (slower, timed before and not now, removed, nothing
        compared; a wrong kernel is wrong_rows')."""
        bench = self.bench.gate(self.accept_removed) if self.bench is not None else []
        return self.comparison.gate() + [f"bench {line}" for line in bench]


def _joined(values: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(v for v in values if v))


def release_package(results: Sequence[Result], meta: dict[str, Any], path: Path) -> str:
    """The one WebGPU package version a run recorded; ReportError when it recorded none or several."""
    packages = {r.adapter.webgpu_package for r in results if r.adapter is not None and r.adapter.webgpu_package}
    if meta.get("webgpu_package"):
        packages.add(str(meta["webgpu_package"]))
    if len(packages) != 1:
        what = "no WebGPU package version (written by an older q4gsw?)" if not packages else \
            f"several WebGPU packages ({', '.join(sorted(packages))})"
        raise ReportError(f"{path}: records {what}: pass one results folder per release, as the versions-* "
                          "sessions write them (docs/versions.md)")
    return packages.pop()


def version_key(package: str) -> tuple[str, tuple[Any, ...]]:
    """Order by package, then version numerically (0.9 before 0.10)."""
    name, _, version = package.partition("==")
    return name, tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+-]", version))


def read_releases(paths: Sequence[Path]) -> list[Release]:
    """The releases of these results.json files, ordered by package and version; ReportError on a bad file."""
    found: dict[str, list[tuple[Path, list[Result]]]] = {}
    for path in paths:
        try:
            results, meta = read_results(path)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ReportError(f"{path}: not a q4gsw results.json ({type(exc).__name__}: {exc})") from exc
        found.setdefault(release_package(results, meta, path), []).append((path, results))
    releases = []
    for package, runs in found.items():
        results = [r for _, rs in runs for r in rs]
        adapters = [r.adapter for r in results if r.adapter is not None]
        releases.append(Release(package, _joined([a.webgpu_build for a in adapters]),
                                _joined([a.driver_text() for a in adapters]), tuple(str(p) for p, _ in runs),
                                tuple(results)))
    return sorted(releases, key=lambda r: version_key(r.package))


def read_bench_runs(paths: Sequence[Path], releases: Sequence[Release] = ()) -> dict[str, dict[str, Any]]:
    """package version -> its bench JSON (the package its adapter recorded); ReportError on a bad or unversioned
    file, one of a release none of the runs is (with releases), or one of another op than the first: each would be
    compared with nothing, silently."""
    from q4gsw.drift.bench import op_problem, read_baseline
    from q4gsw.report.scoreboard import ScoreboardError

    runs: dict[str, dict[str, Any]] = {}
    known = [release.package for release in releases]
    first: tuple[Path, dict[str, Any]] | None = None
    for path in paths:
        try:
            run = read_baseline(path, "--bench")
        except ScoreboardError as exc:
            raise ReportError(str(exc)) from None
        package = (run.get("adapter") or {}).get("webgpu_package")
        if not package:
            raise ReportError(f"--bench {path}: records no WebGPU package version (written by an older q4gsw?): "
                              "bench each release with this q4gsw")
        if package in runs:
            raise ReportError(f"--bench {path}: a second bench of {package}: pass one bench JSON per release")
        if known and package not in known:
            raise ReportError(f"--bench {path}: times {package}, a release none of the runs is ({', '.join(known)}): "
                              "pass the bench JSON of each release given as a run")
        first = first or (path, run)
        problem = op_problem(first[1], first[0], run.get("op"), f"--bench {path}")
        if problem:
            raise ReportError(problem.replace("--baseline", "--bench", 1))
        runs[package] = run
    return runs


def steps(releases: Sequence[Release], factor: float = DEFAULT_FACTOR,
          benches: dict[str, dict[str, Any]] | None = None, accept_removed: bool = False) -> list[Step]:
    """Each release against the previous release of its package: the drift rule, and the bench rule where both
    have a bench JSON."""
    benches = benches or {}
    found = []
    for old, new in itertools.pairwise(releases):
        if old.name != new.name:
            continue
        comparison = diff_runs(old.results, new.results, label=old.package, factor=factor,
                               accept_removed=accept_removed)
        bench = None
        if old.package in benches and new.package in benches:
            bench = diff_bench(benches[old.package], benches[new.package], label=old.package)
        found.append(Step(old, new, comparison, bench, accept_removed))
    return found


def wrong_rows(benches: dict[str, dict[str, Any]]) -> list[str]:
    """A kernel a release's bench recorded as wrong (correct: false), one line each: it fails --fail-on-drift, as
    it fails `bench` itself (diff_bench leaves a baseline's wrong rows out, so the first release's would go unseen)."""
    return [f"WRONG {package}: {row['shape']} {row['kernel']}: {row.get('message') or 'wrong result'}"
            for package, run in benches.items() for row in run["rows"] if row["correct"] is False]


def unbenched(found_steps: Sequence[Step], benches: dict[str, dict[str, Any]]) -> str:
    """Why --bench JSONs give no step a speed ('' when one has it): no two successive releases of a package both
    have one."""
    if not benches or any(step.bench is not None for step in found_steps):
        return ""
    pairs = ", ".join(f"{s.old.package} -> {s.new.package}" for s in found_steps) or "none"
    return (f"--bench: no two successive releases of one package both have a bench JSON (benches of "
            f"{', '.join(benches)}; steps: {pairs}): bench each release of a step to compare their speed")


def _cell(result: Result | None) -> str:
    if result is None:
        return "—"
    return f"{STATUS_MARK.get(result.status, result.status)} {format_number(result.max_abs, '.2e')}".strip()


def _signature(result: Result) -> tuple[Any, ...]:
    """What "identical" compares: the status and every recorded error measure, the |err| histogram included."""
    e = result.errors
    if e is None:
        return (result.status,)
    return (result.status, e.max_abs, e.max_rel, e.nmse, e.mismatches, json.dumps(e.histogram, sort_keys=True))


def _across(name: str, found: Sequence[Result], found_steps: Sequence[Step]) -> str:
    """What the case did across the releases: where it moved (drift rule), else identical or within the factor."""
    moved = [f"{s.old.version}→{s.new.version}: {d.reason()}" for s in found_steps for d in s.comparison.deltas
             if d.kind in ("drift", "status", "improved", "new", "vanished")
             and case_name(d.new if d.new is not None else d.old) == name]
    if moved:
        return "; ".join(moved)
    if len(found) < 2:
        return "one release"
    if len({_signature(r) for r in found}) == 1:
        return "identical" if any(r.errors is not None for r in found) else "same status"
    return "within the factor"


def table(releases: Sequence[Release], found_steps: Sequence[Step]) -> list[str]:
    """The version × case Markdown table: a row per case (config/kernel/input, whichever backend ran it), a column
    per release (status and max |err|), and what the case did across them."""
    by_release = [{case_name(r): r for r in rel.results} for rel in releases]
    names = list(dict.fromkeys(k for found in by_release for k in found))
    lines = ["| case | " + " | ".join(f"`{rel.package}`" for rel in releases) + " | across releases |",
             "|---|" + "---|" * len(releases) + "---|",
             "| *native build* | " + " | ".join(cell(rel.build) for rel in releases) + " | |",
             "| *driver* | " + " | ".join(cell(rel.driver) for rel in releases) + " | |",
             "| *backend* | " + " | ".join(cell(_joined([r.backend for r in rel.results])) for rel in releases)
             + " | |"]
    for name in names:
        found = [by[name] for by in by_release if name in by]
        lines.append(f"| `{cell(name)}` | " + " | ".join(_cell(by.get(name)) for by in by_release)
                     + f" | {cell(_across(name, found, found_steps))} |")
    return lines


def markdown(releases: Sequence[Release], found_steps: Sequence[Step], fail_on_drift: bool = False) -> str:
    """versions.md: the version × case table of every release, then each step's comparison and speed."""
    lines = ["## q4gsw: WebGPU implementation versions", "",
             f"{len(releases)} releases; cells: status and max |err|; \"identical\": "
             "status and every error measure (max and max relative |err|, NMSE, the |err| histogram) alike.", "",
             *table(releases, found_steps), ""]
    if not found_steps:
        lines += ["No two releases of one package: no release is compared with another by the drift rule.", ""]
    for step in found_steps:
        section = markdown_section(step.comparison, fail_on_drift, heading=f"{step.old.package} → {step.new.package}")
        lines += [section.rstrip(), ""]
        if step.bench is not None:
            lines += ["Speed (bench JSONs):", "", bench_markdown(step.bench), ""]
    return "\n".join(lines)


def as_json(releases: Sequence[Release], found_steps: Sequence[Step]) -> dict[str, Any]:
    """versions.json: the releases, every case's status and max |err| per release, and each step's counts."""
    cases: dict[str, dict[str, Any]] = {}
    for rel in releases:
        for r in rel.results:
            cases.setdefault(case_key(r), {})[rel.package] = {"status": r.status, "max_abs": r.max_abs}
    return {"releases": [{"package": rel.package, "build": rel.build, "driver": rel.driver,
                          "sources": list(rel.sources)} for rel in releases],
            "cases": cases,
            "steps": [{"from": s.old.package, "to": s.new.package, "counts": s.comparison.counts(),
                       "moved": [{"case": d.key, "kind": d.kind, "why": d.reason()} for d in s.comparison.deltas
                                 if d.kind != "same"],
                       "bench": None if s.bench is None else s.bench.line()} for s in found_steps]}


def write(out: Path, releases: Sequence[Release], found_steps: Sequence[Step], fail_on_drift: bool) -> str:
    """versions.md and versions.json into `out`; returns the Markdown."""
    from q4gsw.report.result import replace_file

    text = markdown(releases, found_steps, fail_on_drift)
    replace_file(out / "versions.md", text.encode("utf-8"))
    replace_file(out / "versions.json", json.dumps(as_json(releases, found_steps), indent=2).encode("utf-8"))
    return text
