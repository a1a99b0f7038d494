"""Benchmark every q4gsw kernel declared in matrix.toml on one backend, against numpy on the CPU.

`python -m q4gsw bench [--backend NAME] [--op OP] [--shape SHAPE ...] [--repeats R] [--json PATH]
[--baseline OLD.json]`

A shape is given in the op's own dims (`--shape vocab=128256,dim=2048,tokens=1`) or, for a linear op, as the
shorthand MxKxN; a group size it leaves out is --group-size, and each row records the dims that really ran (a
per-channel op's group spans K). For each shape and each kernel whose `when` holds for it, the kernel runs on the
op's random constants; the time is the best of R repeats, each timed by GPU timestamp queries when the adapter
supports them, else by its wall time (case._time_dispatches), after --warmup-s of back-to-back
dispatches (a GPU timed from idle is timed at its idle clock: docs/kernels.md "Speed"); the JSON
also records their median, spread and every sample, which `--baseline` (bench_drift) compares
against. The reference is
numpy's fp32 dequantize-then-matmul timed in the same process on the same shape: on CPU adapters
the ratio says how far the WGSL kernel is from what the same cores do natively. Each result is also
checked once against the fp64 golden, because a fast wrong kernel is not a result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from q4gsw.case import GPU_WARMUP_S, warmup_for
from q4gsw.cases import Selection, build_cases
from q4gsw.commands.bench_shapes import bench_configs
from q4gsw.drift.baseline import LoneGateOption, check_gate_options
from q4gsw.drift.bench import (
    BENCH_FORMAT,
    add_bench_baseline_options,
    op_problem,
    read_baseline,
    repeat_stats,
    report_bench_drift,
)
from q4gsw.matrix.load import Config, MatrixError, load_matrix
from q4gsw.matrix.values import DEFAULT_OP
from q4gsw.ops import Op, op_for
from q4gsw.paths import unusable_output_file
from q4gsw.report import verdict
from q4gsw.report.result import ReportNotWritten, replace_file
from q4gsw.report.scoreboard import ScoreboardError, scoreboard
from q4gsw.run.exporter import FixtureSource
from q4gsw.run.stages import RunOptions, run_selection


@dataclass
class Row:
    shape: str  # the shape in the op's words
    dims: dict[str, int]  # the dims that ran, by the op's names (group_size as run: a per-channel op's is K)
    kernel: str
    time_s: float | None
    timing: str  # "gpu" (timestamp queries), "wall" (dispatch wall time) or "-" when not run
    gflops: float | None
    gbytes_s: float | None
    numpy_s: float
    numpy_gflops: float
    ratio: float | None  # kernel GFLOP/s / numpy GFLOP/s
    correct: bool | None
    message: str
    workgroups: list[int]
    torch_int4_s: float | None = None  # same-GPU baselines (Op.torch_baseline), where torch has CUDA
    torch_fp32_s: float | None = None
    speedup_vs_torch_int4: float | None = None  # torch int4 time / kernel time: >= 1 is as fast or faster
    roofline: float | None = None  # the larger of GB/s / peak GB/s and GFLOP/s / peak GFLOP/s, where peaks are given
    # Over the timed repeats (time_s is their best): what `bench --baseline` needs to tell a slower kernel from noise.
    median_s: float | None = None
    spread_s: float | None = None  # slowest - best repeat: the noise one run of this kernel shows
    samples_s: list[float] = field(default_factory=list)
    warmup_s: float | None = None  # seconds of back-to-back load before the timed repeats (case.warmup_for)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _numpy_time(op: Op, x: np.ndarray, constants: Any, repeats: int) -> float:
    """Best-of-`repeats` seconds of the op's fp32 numpy reference (for linear_q4gsw: dequantize + x @ W.T)."""
    best = math.inf
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        op.cpu_reference(x, constants)
        best = min(best, time.perf_counter() - started)
    return best


def _print_table(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    with_torch = any(r.torch_fp32_s is not None for r in rows)
    columns = [("shape", "left"), ("kernel", "left"), ("time ms", "right"), ("via", "left"),
               ("GFLOP/s", "right"), ("GB/s", "right"), ("numpy ms", "right"), ("numpy GFLOP/s", "right"),
               ("ratio", "right")]
    if with_torch:
        columns += [("torch int4 ms", "right"), ("vs torch int4", "right"), ("torch fp32 ms", "right")]
    with_roofline = any(r.roofline is not None for r in rows)
    if with_roofline:
        columns.append(("roofline", "right"))
    for name, justify in [*columns, ("check", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]

    def ms(seconds: float | None, digits: int = 3) -> str:
        return f"{seconds * 1e3:.{digits}f}" if seconds else "-"

    for r in rows:
        check = "ok" if r.correct else ("[red]WRONG[/red]" if r.correct is False else "-")
        cells = [r.shape, r.kernel, ms(r.time_s), r.timing,
                 f"{r.gflops:.2f}" if r.gflops else "-", f"{r.gbytes_s:.2f}" if r.gbytes_s else "-",
                 ms(r.numpy_s, 2), f"{r.numpy_gflops:.2f}", f"{r.ratio:.3f}" if r.ratio is not None else "-"]
        if with_torch:
            cells += [ms(r.torch_int4_s), f"{r.speedup_vs_torch_int4:.2f}x" if r.speedup_vs_torch_int4 else "-",
                      ms(r.torch_fp32_s)]
        if with_roofline:
            cells.append(f"{100 * r.roofline:.0f}%" if r.roofline is not None else "-")
        table.add_row(*cells, check if r.correct is not False else f"{check} {r.message}")
    # Piped output (CI logs) would otherwise be squeezed into 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="q4gsw bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="swiftshader", help="backend name from matrix.toml")
    parser.add_argument("--shape", "--shapes", dest="shapes", nargs="+", action="extend", default=None,
                        metavar="SHAPE", help="shapes to time, in the op's dims (e.g. vocab=128256,dim=2048,tokens=1; "
                        "a linear op also takes MxKxN); default: the op's own bench shapes")
    parser.add_argument("--group-size", type=int, default=32,
                        help="quantisation group size of a shape that gives none (default 32)")
    parser.add_argument("--op", default=DEFAULT_OP, help=f"the op whose kernels are timed (default {DEFAULT_OP}; "
                        "docs/ops.md)")
    parser.add_argument("--repeats", type=int, default=3, help="timed dispatches per kernel; the best counts")
    parser.add_argument("--warmup-s", type=float, default=None, metavar="S",
                        help=f"seconds of back-to-back dispatches before each kernel's timed repeats, so a GPU is "
                             f"timed at its working clock, not its idle one (default: {GPU_WARMUP_S:g} on GPUs, 0 on "
                             f"CPU adapters; docs/kernels.md, \"Speed\")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="results/bench.json", type=Path, help="where to write the results")
    parser.add_argument("--matrix", default="matrix.toml", type=Path)
    parser.add_argument("--executorch", type=Path, metavar="PATH",
                        help="also time ExecuTorch's kernels from this checkout (each variant that applies)")
    parser.add_argument("--peak-gbs", type=float, help="the adapter's memory bandwidth in GB/s (roofline column)")
    parser.add_argument("--peak-gflops", type=float, help="the adapter's fp32 GFLOP/s (roofline column)")
    parser.add_argument("--torch", choices=("auto", "on", "off"), default="auto",
                        help="also time torch's CUDA int4 path and fp32 dequant+matmul on the same GPU "
                             "(auto: on the native backend when torch sees CUDA)")
    parser.add_argument("--scoreboard", nargs="+", type=Path, metavar="BENCH.json",
                        help="print a Markdown scoreboard of bench JSON files (e.g. Dawn and wgpu-native); exit")
    add_bench_baseline_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scoreboard:
        return _print_scoreboard(args.scoreboard)
    try:  # before any work: a baseline that cannot be compared with is a usage error, not a late surprise
        check_gate_options(args, baseline="OLD.json (the bench JSON to compare with)")
        baseline = read_baseline(args.baseline) if args.baseline is not None else None
        compared = read_baseline(args.compare, "--compare") if args.compare is not None else None
    except (ScoreboardError, LoneGateOption) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    if baseline is not None:  # another op's times compare nothing: said before any work
        against = f"--compare {args.compare}" if compared is not None else "this bench"
        problem = op_problem(baseline, args.baseline, compared.get("op") if compared is not None else args.op, against)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return verdict.USAGE
    if compared is not None:
        if baseline is None:
            parser.error("--compare NEW.json needs --baseline OLD.json (the bench JSON to compare it with)")
        return report_bench_drift(baseline, compared, args, verdict.OK)
    try:
        configs = bench_configs(args)
        matrix = load_matrix(args.matrix)
        backend = matrix.backend(args.backend)
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    problem = unusable_output_file(args.json, "bench JSON")  # before any work: the results are never lost
    if problem:
        print(f"error: --json: {problem}", file=sys.stderr)
        return verdict.USAGE
    use_torch = args.torch == "on" or (args.torch == "auto" and backend.provision == "native" and _cuda_available())
    if args.torch == "on" and not _cuda_available():
        print("error: --torch on, but torch with CUDA is not importable here")
        return verdict.USAGE
    kernels = [k for k in matrix.kernels if k.op == args.op]
    missing: dict[str, str] = {}
    if args.executorch is not None:
        from q4gsw.export.kernel_sets import load_checkout

        try:
            loaded_sets = load_checkout(matrix, args.executorch, (args.op,))
        except MatrixError as exc:
            print(f"error: --executorch: {exc}", file=sys.stderr)
            return verdict.USAGE
        for loaded in loaded_sets:
            kernels += list(loaded.kernels)
            missing.update(loaded.missing)
        for name, why in missing.items():  # not benchmarked: said, and the bench does not exit 0
            print(f"error: --executorch: kernel '{name}' cannot be benchmarked: {why}", file=sys.stderr)
    cases, unsupported = build_cases(matrix, backend, configs, tuple(kernels))
    selection = Selection(backend=backend, configs=configs, cases=cases, skipped=unsupported)
    options = RunOptions(fixtures=FixtureSource(None, Path("."), matrix.path), repeats=args.repeats,
                         mode="bench", seed=args.seed, warmup_s=args.warmup_s)
    results = run_selection(selection, options, matrix.root)
    flat = [row for config in configs for row in _rows(config, args, results, use_torch)]
    code = _report(flat, results, backend, args)
    if code is None:  # the bench JSON was not written: nothing to compare
        return verdict.FAILED
    if code == verdict.OK and missing:
        code = verdict.FAILED
    if baseline is None:
        return code
    return report_bench_drift(baseline, json.loads(args.json.read_text(encoding="utf-8")), args, code)


def _print_scoreboard(paths: list[Path]) -> int:
    try:
        table, warnings = scoreboard(paths)
    except ScoreboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(table)
    return verdict.OK


def _report(flat: list[Row], results: list[Any], backend: Any, args: argparse.Namespace) -> int | None:
    """Print the table and write the bench JSON (None: not written); OK when every kernel that ran was right and
    one was."""
    adapter = next((r.adapter for r in results if r.adapter), None)
    adapter_name = adapter.name if adapter else "no adapter"
    warmed = [r.warmup_s for r in flat if r.warmup_s]
    warm_note = "timed from idle"
    if warmed:
        shortest, longest = f"{min(warmed):.2g}", f"{max(warmed):.2g}"
        span = shortest if shortest == longest else f"{shortest}-{longest}"
        warm_note = f"timed after {span} s of load each"
    _print_table(flat, f"q4gsw kernels on {adapter_name} ({backend.name}, {backend.webgpu}), {warm_note}; numpy fp32 "
                       f"on {platform.processor() or 'CPU'} with {os.cpu_count()} cores")
    try:  # whole or not at all: a full disk leaves the previous bench JSON as it was, and says so
        replace_file(args.json, json.dumps({
            "backend": backend.name, "webgpu": backend.webgpu, "adapter": asdict(adapter) if adapter else None,
            "bench_format": BENCH_FORMAT, "op": args.op, "shapes": [r.dims for r in flat], "repeats": args.repeats,
            "warmup_s": args.warmup_s, "cpu_count": os.cpu_count(),
            "numpy": np.__version__, "rows": [asdict(r) for r in flat]}, indent=2, default=str).encode("utf-8"))
    except ReportNotWritten as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    print(f"wrote {args.json}")
    correct = flat and all(r.correct is not False for r in flat) and any(r.correct for r in flat)
    return verdict.OK if correct else verdict.FAILED


def _rows(config: Config, args: argparse.Namespace, results: list[Any], use_torch: bool) -> list[Row]:
    """The bench rows of one shape: every kernel's engine result beside numpy's (and torch's) time."""
    op = op_for(config)
    packed = op.synthetic_constants(config, args.seed)
    x = op.make_input(op.synthetic_input, replace(config, weight_seed=args.seed))
    numpy_s = _numpy_time(op, x, packed, args.repeats)
    flops = op.flops(config)
    numpy_gflops = flops / numpy_s / 1e9
    torch_times = None
    if use_torch:
        torch_times = op.torch_baseline(x, packed, op.golden(x, packed), args.repeats,
                                        warmup_for(is_cpu=False, asked=args.warmup_s))  # torch: a CUDA GPU
    nbytes = op.bytes_moved(config)
    rows = []
    for r in (r for r in results if r.config == config.name):
        seconds = r.timings.gpu_s
        via = r.timings.gpu_timing or ("unsupported" if r.status == "unsupported" else "-")
        gflops = flops / seconds / 1e9 if seconds else None
        correct = None if r.status in ("unsupported", "skip") else r.status == "pass"
        int4_s = torch_times.int4_s if torch_times else None
        note = "time not measurable: the timestamps read 0" if via == "unmeasured" else ""
        gbs = nbytes / seconds / 1e9 if seconds else None
        roof = [v / p for v, p in ((gbs, args.peak_gbs), (gflops, args.peak_gflops)) if v and p]
        rows.append(Row(op.shape_text(config.dims), dict(config.dims), r.kernel or "-", seconds, via, gflops,
                        nbytes / seconds / 1e9 if seconds else None, numpy_s, numpy_gflops,
                        gflops / numpy_gflops if gflops else None, correct,
                        r.message if r.status != "pass" else note, list(r.workgroups), torch_int4_s=int4_s,
                        torch_fp32_s=torch_times.fp32_s if torch_times else None,
                        speedup_vs_torch_int4=int4_s / seconds if int4_s and seconds else None,
                        roofline=max(roof) if roof else None, **repeat_stats(r.timings.gpu_samples_s),
                        warmup_s=r.timings.gpu_warmup_s))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
