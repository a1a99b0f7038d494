"""Kernel time against the GPU's recent load: isolated repeats after idling, back-to-back, isolated again.

Why: on the lent H200 every linear_q4gsw kernel at lm_head timed ~5x slower than the same code on an H100, and
q_proj_4k's samples in one bench run jumped from 6.8 ms to 4.1 ms partway through. This separates the kernel
from the GPU's clock and power state: for each kernel (synthetic constants) it idles, times `--isolated`
repeats the way `bench` does (one submit and wait each), then dispatches back to back for `--sustain-s`
seconds (`--batch` passes per submit, each pass timed by timestamps), then times isolated repeats again.
Each phase is one case.execute_case without warm-up, so each is judged against the fp64 golden first.
torch's int4 path gets the same three phases where torch sees CUDA. Run `nvidia-smi --query-gpu=... -lms 100`
beside it to see the clocks. A benchmark, not a test.
Usage: python scripts/steady_state_probe.py --backend native --shape 1x2048x128256 --kernels gpu_gemv_fast
       [--variant 'rpt2:rpt=2' --variant 'persistent:dispatch=1056' ...]  (each kernel again with those changes)
Exit 0 when every kernel passed the golden, 1 when one did not (or no device), 2 for a mistake in the arguments,
said in one line before any work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


class ProbeUsage(Exception):
    """A mistake on the probe's command line: said in one line, exit 2, before any work."""

    def __init__(self, option: str, problem: str, fix: str) -> None:
        from q4gsw.matrix.checker import MatrixError

        super().__init__(str(MatrixError("command line", "steady_state_probe", option, problem, fix)))


def phase_summary(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    tail = samples[-max(1, len(samples) // 10):]
    return {"n": len(samples), "best_ms": 1e3 * min(samples), "median_ms": 1e3 * statistics.median(samples),
            "first_ms": 1e3 * samples[0], "last10pct_median_ms": 1e3 * statistics.median(tail)}


def parse_variant(text: str) -> tuple[str, dict[str, str], str | None, str | None]:
    """'LABEL:key=value,...' -> (label, override constants, dispatch expression or None, WGSL file or None); key
    `dispatch` is the kernel's workgroup counts (one expression, grid-strided kernels take any count), `file` a
    WGSL file with the same bindings to run in the kernel's place (a candidate rewrite)."""
    label, _, body = text.partition(":")
    overrides: dict[str, str] = {}
    dispatch = file = None
    items = [item.partition("=") for item in body.split(",") if item]
    if not label or not items or any(not sep for _, sep, _ in items):
        raise ProbeUsage("--variant", f"{text!r} is not LABEL:key=value", "write LABEL:key=value[,key=value...], "
                         "e.g. rpt2:rpt=2")
    for key, _, value in items:
        if key == "dispatch":
            dispatch = value
        elif key == "file":
            file = value
        else:
            overrides[key] = value
    return label, overrides, dispatch, file


def with_variant(case: Any, variant: str) -> Any:
    label, overrides, dispatch, file = parse_variant(variant)
    kernel = case.kernel
    kernel = replace(kernel, name=f"{kernel.name}[{label}]", overrides={**kernel.overrides, **overrides},
                     dispatch=(dispatch,) if dispatch else kernel.dispatch,
                     text=Path(file).read_text() if file else kernel.text)
    return replace(case, kernel=kernel)


def kernel_phases(device: Any, case: Any, problem: Any, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The three phases of one kernel, each an execute_case (judged against the golden, then timed without a
    warm-up); a kernel that does not pass is reported, not timed further."""
    from q4gsw.case import execute_case

    golden_max = float(np.abs(problem.golden[case.input]).max()) or 1.0
    row: dict[str, Any] = {"kernel": case.kernel.name}

    def phase(name: str, repeats: int, batch: int = 1) -> list[float]:
        stamp = time.time()
        result = execute_case(case, device, problem, root, repeats=repeats, warmup_s=0.0, batch=batch)
        samples = list(result.timings.gpu_samples_s)
        row.update(status=result.status, message=result.message, workgroups=list(result.workgroups),
                   max_rel_err=result.errors.max_abs / golden_max if result.errors else None)
        row[name] = {"t0": stamp, "wall_s": time.time() - stamp, **phase_summary(samples)}
        return samples if result.status == "pass" else []

    time.sleep(args.idle_s)
    cold = phase("isolated_after_idle", args.isolated)
    if not cold:
        return row
    row["isolated_after_idle"]["samples_ms"] = [1e3 * s for s in cold]
    total = max(args.batch, int(args.sustain_s / statistics.median(cold)))
    busy = phase("back_to_back", total, args.batch)
    row["back_to_back"]["samples_ms_every_10th"] = [1e3 * s for s in busy[::10]]
    warm = phase("isolated_after_load", args.isolated)
    row["isolated_after_load"]["samples_ms"] = [1e3 * s for s in warm]
    return row


def torch_phases(x: np.ndarray, constants: Any, golden: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from q4gsw.ops.linear_q4gsw.torch_baseline import gpu_operands, int4_function

    x_gpu, nibbles, scales = gpu_operands(x, constants)
    fn = int4_function(x_gpu, nibbles, scales, constants.group_size)
    out = fn().double().cpu().numpy()
    phases: dict[str, Any] = {"kernel": "torch int4 (tinygemm, bf16 activations)",
                              "max_rel_err": float(np.abs(out - golden).max() / (np.abs(golden).max() or 1.0))}

    def isolated(n: int) -> list[float]:
        samples = []
        for _ in range(n):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        return samples

    time.sleep(args.idle_s)
    stamp = time.time()
    cold = isolated(args.isolated)
    phases["isolated_after_idle"] = {"t0": stamp, **phase_summary(cold), "samples_ms": [1e3 * s for s in cold]}
    stamp = time.time()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(max(args.batch, int(args.sustain_s / (statistics.median(cold) or 1e-3))))]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    busy = [s.elapsed_time(e) / 1e3 for s, e in events]
    phases["back_to_back"] = {"t0": stamp, "wall_s": time.time() - stamp, **phase_summary(busy),
                              "samples_ms_every_10th": [1e3 * s for s in busy[::10]]}
    stamp = time.time()
    warm = isolated(args.isolated)
    phases["isolated_after_load"] = {"t0": stamp, **phase_summary(warm), "samples_ms": [1e3 * s for s in warm]}
    return phases


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="native")
    parser.add_argument("--op", default="linear_q4gsw")
    parser.add_argument("--shape", required=True, metavar="SHAPE",
                        help="in the op's dims (as bench --shape takes it), or a linear's MxKxN")
    parser.add_argument("--kernels", nargs="+", required=True)
    parser.add_argument("--group-size", type=int, default=32)
    parser.add_argument("--torch", action="store_true", help="also torch's int4 path (linear_q4gsw, CUDA)")
    parser.add_argument("--idle-s", type=float, default=2.0, help="sleep before each kernel's first phase")
    parser.add_argument("--isolated", type=int, default=30, help="repeats of each isolated phase")
    parser.add_argument("--sustain-s", type=float, default=2.0, help="seconds of back-to-back dispatches")
    parser.add_argument("--batch", type=int, default=500, help="passes per submit while back to back")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL:key=value,...",
                        help="also each kernel with these override constants (and dispatch=EXPR)")
    parser.add_argument("--json", type=Path, help="write the phases here")
    return parser


def check_numbers(args: argparse.Namespace) -> None:
    """The counts and durations: each phase needs a repeat, a submit a pass, a sleep a finite length."""
    for option, value, least in (("--isolated", args.isolated, 1), ("--batch", args.batch, 1),
                                 ("--group-size", args.group_size, 1)):
        if value < least:
            raise ProbeUsage(option, f"{value} is below {least}", f"pass {option} {least} or more")
    for option, value in (("--idle-s", args.idle_s), ("--sustain-s", args.sustain_s)):
        if not (math.isfinite(value) and value >= 0):
            raise ProbeUsage(option, f"{value} is not a number of seconds", f"pass {option} 0 or more")


def prepare(args: argparse.Namespace, root: Path) -> tuple[Any, Any, list[Any]]:
    """Everything the command line says, checked before any work: (backend, config, cases of one input)."""
    from q4gsw.cases import build_cases
    from q4gsw.commands.bench_shapes import bench_config, parse_shape
    from q4gsw.matrix.checker import MatrixError, suggest
    from q4gsw.matrix.load import load_matrix
    from q4gsw.ops import op_for, op_names
    from q4gsw.paths import unusable_output_file

    check_numbers(args)
    for variant in args.variant:
        file = parse_variant(variant)[3]
        if file is not None and not Path(file).is_file():
            raise ProbeUsage("--variant", f"{variant!r}: file {file!r} does not exist",
                             "give a WGSL file with the kernel's bindings")
    if args.op not in op_names():
        raise ProbeUsage("--op", f"unknown op '{args.op}'",
                         f"{suggest(args.op, list(op_names()))}choose from {', '.join(op_names())}")
    if args.torch and args.op != "linear_q4gsw":  # torch_phases times torch's int4 linear
        raise ProbeUsage("--torch", f"times torch's int4 linear, not op {args.op}", "leave --torch out")
    problem = unusable_output_file(args.json, "probe JSON") if args.json else ""
    if problem:
        raise ProbeUsage("--json", problem, "pass another --json")
    matrix = load_matrix(root / "matrix.toml")
    backend = matrix.backend(args.backend)
    op = op_for(args.op)
    try:
        config = bench_config(parse_shape(args.shape, op, args.group_size), args.op)
    except MatrixError as exc:
        raise ProbeUsage("--shape", exc.problem, exc.fix) from None
    for shape_problem in op.shape_problems(config):
        raise ProbeUsage("--shape/--group-size", f"{op.shape_text(config.dims)} for op {args.op}: "
                         f"{shape_problem.problem}", shape_problem.fix)
    known = [k.name for k in matrix.kernels if k.op == args.op]
    for name in args.kernels:
        if name not in known:
            raise ProbeUsage("--kernels", f"'{name}' is no kernel of op {args.op} in {matrix.path}",
                             f"{suggest(name, known)}choose from {', '.join(known)}")
    cases, _ = build_cases(matrix, backend, (config,), tuple(k for k in matrix.kernels
                                                                   if k.op == args.op and k.name in args.kernels))
    if not cases:  # their `when`, or the adapters they are written for, rule the shape or backend out
        raise ProbeUsage("--kernels", f"none of {args.kernels} applies to {args.shape} on {args.backend}",
                         "choose kernels whose `when` holds for the shape (python -m q4gsw list)")
    return backend, config, [c for c in cases if c.input == cases[0].input]


def main() -> int:
    from q4gsw.case import load_problem, open_device
    from q4gsw.matrix.checker import MatrixError
    from q4gsw.webgpu.provision import provision

    args = build_parser().parse_args()
    root = Path(__file__).resolve().parent.parent
    try:
        backend, config, cases = prepare(args, root)
    except (ProbeUsage, MatrixError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.update(provision(backend))
    device, why = open_device(list(cases))
    if device is None:
        print(f"error: no device: {why}", file=sys.stderr)
        return 1
    problem = load_problem(config, (cases[0].input,), None, 0)
    print(f"adapter: {device.info.name} | {device.info.webgpu} | driver {device.info.driver}", flush=True)
    rows = []
    for case in [*cases, *(with_variant(c, v) for c in cases for v in args.variant)]:
        rows.append(kernel_phases(device, case, problem, root, args))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "samples_ms"}, default=str)[:600], flush=True)
    if args.torch:
        rows.append(torch_phases(problem.x[cases[0].input], problem.constants, problem.golden[cases[0].input], args))
    print_rows(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"shape": str(args.shape), "backend": args.backend, "adapter": device.info.name,
                       "driver": device.info.driver, "webgpu": device.info.webgpu, "args": vars(args) | {
                           "shape": str(args.shape)}, "rows": rows}, handle, indent=1, default=str)
    return 0 if all(r.get("status", "pass") == "pass" for r in rows) else 1


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'kernel':<32} {'idle->isolated':>15} {'back-to-back':>13} {'(last 10%)':>11} {'isolated after':>15}  ms")
    for r in rows:
        if r.get("status", "pass") != "pass":
            print(f"{r['kernel'][:32]:<32} {r['status'].upper()}: {r['message']}")
            continue
        a, b, c = r["isolated_after_idle"], r["back_to_back"], r["isolated_after_load"]
        print(f"{r['kernel'][:32]:<32} {a.get('median_ms', 0):15.4f} {b.get('median_ms', 0):13.4f} "
              f"{b.get('last10pct_median_ms', 0):11.4f} {c.get('median_ms', 0):15.4f}")


if __name__ == "__main__":
    raise SystemExit(main())
