"""CI matrix generation from matrix.toml: `python -m q4gsw ci-matrix` (and `nox -s ci-matrix`).

Prints a GitHub Actions matrix, `{"include": [...]}`, with one entry per (suite, tier, backend, shard).
Each entry names the real nox session that runs it (accuracy-<backend> for the required tier, heavy
with `-- --backend B` for the heavy tier, accuracy-<suite>-<backend> for another suite's required
tier), the shard "i/N", a runner label hint and the exact command.

Sharding splits a tier's configs into N shards balanced by cost (the op's FLOPs + bytes moved): configs are
taken largest first (ties by name) and each goes onto the least-loaded shard (ties by index), so
the split is deterministic and `run --shard i/N` selects exactly the configs this module assigned.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from q4gsw.matrix.checker import suggest
from q4gsw.matrix.load import TIERS, Config, Matrix, MatrixError, load_matrix
from q4gsw.sessions import DEFAULT_SUITE, has_session, session_for

EXIT_OK, EXIT_USAGE = 0, 2
# Tiers that a nox session runs; the optional tier has no session (run it with `q4gsw run --tier optional`).
SESSION_TIERS = ("required", "heavy")
CPU_RUNNER = "ubuntu-latest"
GPU_RUNNER = "self-hosted,linux,gpu"
# CPU backends run in Debian: its chromium-common ships SwiftShader and mesa-vulkan-drivers lavapipe,
# which provisioning unpacks or installs as root. GPU runners run on the host (container "").
CPU_CONTAINER = "python:3.11-slim-trixie"
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(ValueError):
    """A malformed shard spec; the message says what is wrong and the expected form."""


def cost(config: Config) -> float:
    """A config's relative cost, to balance shards: its op's FLOPs plus the bytes it moves."""
    from q4gsw.ops import op_for

    op = op_for(config)
    return float(op.flops(config) + op.bytes_moved(config))


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 1 <= i <= N; raises ShardError naming the problem."""
    match = _SHARD_RE.match(str(text))
    if not match:
        raise ShardError(f"{text!r} is not of the form i/N (e.g. 1/3): i is the 1-based shard, N the shard count")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ShardError(f"{text!r}: the shard count N must be at least 1")
    if not 1 <= index <= count:
        raise ShardError(f"{text!r}: the shard index i must be between 1 and N={count} (shards are 1-based)")
    return index, count


def shard_configs(configs: Iterable[Config], count: int) -> list[list[Config]]:
    """Split configs into `count` shards: largest cost first onto the least-loaded shard.

    Deterministic: configs are ordered by (-cost, name), and a tie between equally loaded shards goes
    to the lowest index. Within a shard, configs keep the matrix.toml order of the input. Shards may
    be empty when there are fewer configs than shards.
    """
    if count < 1:
        raise ShardError(f"shard count must be at least 1, got {count}")
    configs = list(configs)
    order = {c.name: i for i, c in enumerate(configs)}
    loads = [0.0] * count
    shards: list[list[Config]] = [[] for _ in range(count)]
    for config in sorted(configs, key=lambda c: (-cost(c), c.name)):
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].append(config)
        loads[target] += cost(config)
    return [sorted(shard, key=lambda c: order[c.name]) for shard in shards]


def select_shard(configs: Sequence[Config], index: int, count: int) -> tuple[Config, ...]:
    """The configs of shard `index` (1-based) of `count`."""
    if not 1 <= index <= count:
        raise ShardError(f"shard index {index} is outside 1..{count}")
    return tuple(shard_configs(configs, count)[index - 1])


def runner_for(matrix: Matrix, backend: str, cpu_runner: str = CPU_RUNNER, gpu_runner: str = GPU_RUNNER) -> list[str]:
    """Runner labels (a runs-on list): a hosted runner for CPU backends, self-hosted GPU labels otherwise."""
    labels = cpu_runner if matrix.backend(backend).device_type == "CPU" else gpu_runner
    return [label.strip() for label in labels.split(",") if label.strip()]


def _parse_shards(items: Sequence[str], tiers: Sequence[str]) -> dict[str, int]:
    """--shards N (every tier) and/or --shards TIER=N, later items win."""
    shards = dict.fromkeys(tiers, 1)
    for item in items:
        tier, sep, value = item.rpartition("=")
        if not value.strip().isdigit() or int(value) < 1:
            raise ShardError(f"--shards {item!r}: expected N or TIER=N with N >= 1, e.g. --shards 2 or "
                             "--shards heavy=3")
        if sep:
            if tier not in SESSION_TIERS:
                raise ShardError(f"--shards {item!r}: unknown tier {tier!r}, choose one of {', '.join(SESSION_TIERS)}")
            shards[tier] = int(value)
        else:
            shards = dict.fromkeys(shards, int(value))
    return shards


def build_matrix(matrix: Matrix, tiers: Sequence[str] = ("required",), backends: Sequence[str] | None = None,
                 shards: dict[str, int] | None = None, suites: Sequence[str] | None = None,
                 fixtures: str = "fixtures",
                 cpu_runner: str = CPU_RUNNER, gpu_runner: str = GPU_RUNNER, cpu_container: str = CPU_CONTAINER,
                 cpu_only: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The GitHub Actions matrix: one include entry per (suite, tier, backend, shard) with at least one config.

    suites: default every suite in matrix.toml; (suite, tier) pairs that no nox session runs are left out
    (uncovered() lists them).
    """
    suites = list(suites) if suites else list(dict.fromkeys(c.suite for c in matrix.configs))
    backends = list(backends) if backends else list(matrix.backends)
    for backend in backends:
        matrix.backend(backend)  # unknown backend: MatrixError
    if cpu_only:
        backends = [b for b in backends if matrix.backend(b).device_type == "CPU"]
    shards = shards or {}
    include = []
    for suite, tier in itertools.product(suites, tiers):
        configs = matrix.select(tiers=(tier,), suites=(suite,))
        count = max(1, min(shards.get(tier, 1), len(configs))) if configs else 0
        if not has_session(tier, suite):
            continue
        for backend in backends:
            session, session_args = session_for(backend, tier, suite)
            for index, shard in enumerate(shard_configs(configs, count) if count else [], start=1):
                if not shard:
                    continue
                spec = f"{index}/{count}"
                key = f"{backend}-{tier}-{index}of{count}" if suite == DEFAULT_SUITE else \
                    f"{backend}-{suite}-{tier}-{index}of{count}"
                results = f"results/{key}"
                args = [*session_args]
                if fixtures:
                    args += ["--fixtures", fixtures]
                args += ["--shard", spec, "--results", results]
                timeout_s = sum(c.timeout_s for c in shard)
                include.append({
                    "name": " ".join([backend, *([suite] if suite != DEFAULT_SUITE else []), tier, spec]),
                    "backend": backend,
                    "tier": tier,
                    "suite": suite,
                    "session": session,
                    "shard": spec,
                    "configs": " ".join(c.name for c in shard),
                    "cost": sum(cost(c) for c in shard),
                    "runner": runner_for(matrix, backend, cpu_runner, gpu_runner),
                    "gpu": matrix.backend(backend).device_type != "CPU",
                    "container": cpu_container if matrix.backend(backend).device_type == "CPU" else "",
                    "provision": matrix.backend(backend).provision,
                    "results": results,
                    "artifact": f"results-{key}",
                    "timeout_minutes": min(360, math.ceil(timeout_s / 60) + 20),
                    "command": " ".join(["nox", "-s", session, "--", *args]),
                })
    return {"include": include}


def uncovered(matrix: Matrix, tiers: Sequence[str], suites: Sequence[str] | None = None) -> list[str]:
    """Configs of the asked tiers and suites that no nox session runs (so no CI job)."""
    suites = list(suites) if suites else list(dict.fromkeys(c.suite for c in matrix.configs))
    return [c.name for c in matrix.configs
            if c.tier in tiers and c.suite in suites and not has_session(c.tier, c.suite)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m q4gsw ci-matrix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default="matrix.toml", help="path to matrix.toml (default: ./matrix.toml)")
    parser.add_argument("--tier", action="append", choices=SESSION_TIERS,
                        help="tier(s) to generate jobs for (default: required); repeatable")
    parser.add_argument("--backend", action="append", default=[],
                        help="backend(s) to generate jobs for (default: every backend in matrix.toml); repeatable "
                             "or comma-separated")
    parser.add_argument("--shards", action="append", default=[], metavar="N|TIER=N",
                        help="split each tier (or only TIER) into N cost-balanced shards (default 1); repeatable")
    parser.add_argument("--suite", action="append", default=[],
                        help="suite(s) to generate jobs for (default: every suite in matrix.toml); repeatable")
    parser.add_argument("--fixtures", default="fixtures",
                        help="fixtures folder the jobs pass as --fixtures (default: fixtures; '' to export in-job)")
    parser.add_argument("--cpu-runner", default=os.environ.get("Q4GSW_CPU_RUNNER") or CPU_RUNNER,
                        help=f"runs-on labels for CPU backends, comma-separated (default: $Q4GSW_CPU_RUNNER or "
                             f"{CPU_RUNNER})")
    parser.add_argument("--gpu-runner", default=os.environ.get("Q4GSW_GPU_RUNNER") or GPU_RUNNER,
                        help=f"runs-on labels for GPU backends, comma-separated (default: $Q4GSW_GPU_RUNNER or "
                             f"{GPU_RUNNER})")
    parser.add_argument("--cpu-container", default=os.environ.get("Q4GSW_CPU_CONTAINER", CPU_CONTAINER),
                        help=f"container image for CPU-backend jobs ('' for none; default: $Q4GSW_CPU_CONTAINER or "
                             f"{CPU_CONTAINER})")
    parser.add_argument("--cpu-only", action="store_true",
                        help="leave out GPU backends (no self-hosted GPU runner available)")
    parser.add_argument("--github-output", type=Path, metavar="FILE",
                        help="also append `matrix=<json>` (the shards, for a job's strategy.matrix) and `tiers=<tiers>`"
                             " lines to FILE, as GitHub Actions reads step outputs (pass $GITHUB_OUTPUT)")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    tiers = tuple(dict.fromkeys(args.tier or ["required"]))
    backends = [b.strip() for item in args.backend for b in item.split(",") if b.strip()]
    try:
        shards = _parse_shards(args.shards, tiers)
        matrix = load_matrix(args.matrix)
        suites = [s.strip() for item in args.suite for s in item.split(",") if s.strip()] or None
        known = list(dict.fromkeys(c.suite for c in matrix.configs))
        for suite in suites or ():  # a typo is said as run says it, not as "no jobs"
            if suite not in known:
                raise MatrixError("command line", "ci-matrix", "--suite", f"'{suite}' names nothing in {matrix.path}",
                                  f"{suggest(suite, known)}choose from {', '.join(sorted(known))}")
        result = build_matrix(matrix, tiers=tiers, backends=backends or None, shards=shards, suites=suites,
                              fixtures=args.fixtures, cpu_runner=args.cpu_runner, gpu_runner=args.gpu_runner,
                              cpu_container=args.cpu_container, cpu_only=args.cpu_only)
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not result["include"]:
        print(f"error: no jobs: no configs of tier(s) {', '.join(tiers)} in suite(s) {suites or 'any'} for the "
              f"selected backends{' (--cpu-only leaves out GPU backends)' if args.cpu_only else ''}: nothing to run",
              file=sys.stderr)
        return EXIT_USAGE
    if args.github_output is not None:
        # Appended whole before the matrix is printed: a FILE that is a folder or cannot be written is one line and
        # exit 2, never a traceback after a matrix that looks like success.
        lines = (f"matrix={json.dumps(result)}\n"
                 f"tiers={' '.join(tiers)}\n"
                 f"suites={' '.join(dict.fromkeys(e['suite'] for e in result['include']))}\n")
        problem = _append(args.github_output, lines)
        if problem:
            print(f"error: --github-output {args.github_output}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    text = json.dumps(result, indent=2 if args.pretty else None, sort_keys=False)
    print(text)
    left_out = uncovered(matrix, tiers, suites)
    if left_out:
        print(f"warning: no nox session runs these configs, so no job: {', '.join(left_out)}", file=sys.stderr)
    for entry in result["include"]:
        print(f"  {entry['name']:<28} {entry['runner']} {entry['configs']}", file=sys.stderr)
    return EXIT_OK


def _append(path: Path, text: str) -> str:
    """Append `text` to the file `path` (created if absent): '' when done, else why not and what to do."""
    if path.is_dir():
        return "is a folder, not a file: pass the file GitHub Actions names in $GITHUB_OUTPUT"
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc}): pass a writable file ($GITHUB_OUTPUT in a workflow)"
    return ""


__all__ = ["TIERS", "build_matrix", "main", "parse_shard", "select_shard", "shard_configs"]
