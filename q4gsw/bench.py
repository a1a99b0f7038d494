"""Benchmark every q4gsw kernel declared in matrix.toml on one backend, against numpy on the CPU.

`python -m q4gsw bench [--backend NAME] [--shapes MxKxN ...] [--repeats R] [--json PATH]`

For each shape and each kernel whose `when` holds for it, the kernel runs on random packed int4
weights; the time is the GPU timestamp-query time when the adapter supports it, else the wall time
of the extra dispatches (see _time_kernel). The reference is numpy's fp32 dequantize-then-matmul
timed in the same process on the same shape: on CPU adapters the ratio says how far the WGSL kernel
is from what the same cores do natively. Each result is also checked once against the fp64 golden,
because a fast wrong kernel is not a result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from q4gsw import gpu
from q4gsw.compare import compare
from q4gsw.golden import golden
from q4gsw.matrix import Config, Kernel, MatrixError, Tolerance, load_matrix
from q4gsw.unpack import PackedLinear, pack_int4, unpack_int4

DEFAULT_SHAPES = ("1x2048x2048", "1x2048x8192", "1x8192x2048", "256x2048x2048", "1024x2048x512")


@dataclass(frozen=True)
class Shape:
    M: int
    K: int
    N: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        try:
            M, K, N = (int(part) for part in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"shape '{text}' is not MxKxN (e.g. 256x2048x2048)") from None
        if min(M, K, N) < 1 or K % 8 or N % 8:
            raise argparse.ArgumentTypeError(f"shape '{text}': need M, K, N >= 1 and K, N multiples of 8")
        return cls(M, K, N)

    def __str__(self) -> str:
        return f"{self.M}x{self.K}x{self.N}"

    @property
    def flops(self) -> int:
        return 2 * self.M * self.K * self.N


@dataclass
class Row:
    shape: str
    kernel: str
    group_size: int
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
    torch_int4_s: float | None = None  # same-GPU baselines (bench_torch), where torch has CUDA
    torch_fp32_s: float | None = None
    speedup_vs_torch_int4: float | None = None  # torch int4 time / kernel time: >= 1 is as fast or faster


def _tolerance(K: int) -> Tolerance:
    # matrix.toml's K=2048 bound (atol 1e-5, rtol 1e-4), grown like the expected fp32 error (sqrt(K)).
    grow = max(1.0, math.sqrt(K / 2048))
    return Tolerance(atol=1e-5 * grow, rtol=1e-4 * grow, justification="bench sanity check", source="bench")


def _config(shape: Shape, group_size: int) -> Config:
    return Config(name=str(shape), M=shape.M, K=shape.K, N=shape.N, group_size=group_size, tier="optional",
                  suite="bench", inputs=("normal",), weights="random", weight_seed=0, timeout_s=0.0,
                  tolerance=_tolerance(shape.K))


def _problem(shape: Shape, group_size: int, seed: int) -> tuple[np.ndarray, PackedLinear]:
    rng = np.random.default_rng(seed)
    q = rng.integers(-8, 8, size=(shape.N, shape.K), dtype=np.int8)
    # Scales of a quantized nn.Linear (|w| < 1/sqrt(K), so scale ~ max|w| / 7.5): the same magnitudes the
    # matrix's tolerances were derived for, so the golden check applies them honestly (f16 variants too).
    typical = 1.0 / (7.5 * np.sqrt(shape.K))
    scales = (typical * (0.5 + 0.5 * rng.random((shape.K // group_size, shape.N)))).astype(np.float32)
    x = rng.standard_normal((shape.M, shape.K), dtype=np.float32)
    return x, PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group_size)


def _numpy_time(x: np.ndarray, packed: PackedLinear, repeats: int) -> float:
    """Best-of-`repeats` seconds for fp32 dequantize (from the packed bytes) + x @ W.T."""
    best = math.inf
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        w = unpack_int4(packed.weight_packed).astype(np.float32)
        w *= np.repeat(packed.scales[:, :packed.N], packed.group_size, axis=0).T
        _ = x @ w.T
        best = min(best, time.perf_counter() - started)
    return best


def _time_kernel(session: gpu.Session, source: str, kernel: Kernel, constants: dict[str, Any],
                 counts: tuple[int, ...], x: np.ndarray, packed: PackedLinear,
                 repeats: int) -> tuple[gpu.GpuRun, float, str]:
    """(first run, seconds per dispatch, "gpu" or "wall")."""
    first = session.run(source, kernel.name, constants, counts, x, packed, repeats=1)  # warm-up + result
    if session.timestamps:
        timed = session.run(source, kernel.name, constants, counts, x, packed, repeats=repeats)
        assert timed.gpu_s is not None
        return first, timed.gpu_s, "gpu"
    # Without timestamps, Session.run's wall time includes pipeline creation and uploads; the
    # difference between R+1 dispatches and 1 dispatch leaves the R extra dispatches' time.
    single = session.run(source, kernel.name, constants, counts, x, packed, repeats=1).wall_s
    many = session.run(source, kernel.name, constants, counts, x, packed, repeats=repeats + 1).wall_s
    return first, max(many - single, 1e-9) / repeats, "wall"


def _print_table(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    with_torch = any(r.torch_fp32_s is not None for r in rows)
    columns = [("shape MxKxN", "left"), ("kernel", "left"), ("time ms", "right"), ("via", "left"),
               ("GFLOP/s", "right"), ("GB/s", "right"), ("numpy ms", "right"), ("numpy GFLOP/s", "right"),
               ("ratio", "right")]
    if with_torch:
        columns += [("torch int4 ms", "right"), ("vs torch int4", "right"), ("torch fp32 ms", "right")]
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
        table.add_row(*cells, check if r.correct is not False else f"{check} {r.message}")
    # Piped output (CI logs) would otherwise be squeezed into 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="q4gsw bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="swiftshader", help="backend name from matrix.toml")
    parser.add_argument("--shapes", nargs="+", type=Shape.parse, default=None, metavar="MxKxN",
                        help=f"shapes to time (default: {' '.join(DEFAULT_SHAPES)})")
    parser.add_argument("--group-size", type=int, default=32, help="quantisation group size (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed dispatches per kernel; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="results/bench.json", type=Path, help="where to write the results")
    parser.add_argument("--matrix", default="matrix.toml", type=Path)
    parser.add_argument("--torch", choices=("auto", "on", "off"), default="auto",
                        help="also time torch's CUDA int4 path and fp32 dequant+matmul on the same GPU "
                             "(auto: on the native backend when torch sees CUDA)")
    args = parser.parse_args(argv)
    shapes: list[Shape] = args.shapes or [Shape.parse(s) for s in DEFAULT_SHAPES]
    bad = [str(s) for s in shapes if s.K % args.group_size]
    if bad:
        parser.error(f"K must be a multiple of --group-size {args.group_size}: {', '.join(bad)}")

    try:
        matrix = load_matrix(args.matrix)
        backend = matrix.backend(args.backend)
    except MatrixError as exc:
        print(f"error: {exc}")
        return 2
    try:
        # The Vulkan loader reads VK_ICD_FILENAMES once, when wgpu loads it: set it before that.
        os.environ.update(gpu.provision(backend))
        adapter, info = gpu.select_adapter(backend)
    except gpu.BackendUnavailable as exc:
        print(f"error: {exc}")
        return 3
    features = tuple(sorted({f for k in matrix.kernels for f in k.requires_features if f in info.features}))
    session = gpu.Session(adapter, info, features)
    timing = "gpu timestamp queries" if session.timestamps else "wall time of the dispatches (no timestamp-query)"
    print(f"adapter: {info.name} ({info.device_type}, {info.api}); kernel time from {timing}", flush=True)

    from q4gsw import bench_torch

    use_torch = args.torch == "on" or (args.torch == "auto" and backend.name == "native"
                                       and bench_torch.cuda_available())
    if args.torch == "on" and not bench_torch.cuda_available():
        print("error: --torch on, but torch with CUDA is not importable here")
        return 2
    rows: list[Row] = []
    for shape in shapes:
        x, packed = _problem(shape, args.group_size, args.seed)
        numpy_s = _numpy_time(x, packed, args.repeats)
        numpy_gflops = shape.flops / numpy_s / 1e9
        config = _config(shape, args.group_size)
        reference: np.ndarray | None = None
        kernels = gpu.applicable_kernels(matrix.kernels, config, backend)
        if not kernels:
            rows.append(Row(str(shape), "-", args.group_size, None, "-", None, None, numpy_s, numpy_gflops, None,
                            None, "no kernel in matrix.toml applies", []))
        nbytes = (packed.weight_packed.nbytes + 4 * (shape.K // args.group_size) * shape.N
                  + 4 * shape.M * (shape.K + shape.N))
        torch_times = None
        if use_torch:
            reference = golden(x, packed)
            torch_times = bench_torch.time_torch(x, packed, reference, args.repeats)
            print(f"{shape} torch on {torch_times.device}: int4 "
                  f"{torch_times.int4_s * 1e3 if torch_times.int4_s else float('nan'):.3f} ms, fp32 dequant+mm "
                  f"{torch_times.fp32_s * 1e3:.3f} ms {torch_times.note}", flush=True)
        for kernel in kernels:
            try:
                constants, counts = gpu.resolve_kernel(kernel, config.shape_names(), info)
            except gpu.KernelUnsupported as exc:
                rows.append(Row(str(shape), kernel.name, args.group_size, None, "-", None, None, numpy_s,
                                numpy_gflops, None, None, str(exc), []))
                continue
            source = kernel.path(matrix.root).read_text()
            first, seconds, via = _time_kernel(session, source, kernel, constants, counts, x, packed, args.repeats)
            if reference is None:
                reference = golden(x, packed)
            # A kernel with its own justified tolerance (the f16 variants) is held to that, as in `run`.
            result = compare(first.output, reference, kernel.tolerance or config.tolerance)
            correct = result.passed and not first.guard_violations
            message = result.message if not first.guard_violations else (
                f"{len(first.guard_violations)} out-of-bounds writes; {result.message}")
            gflops = shape.flops / seconds / 1e9
            rows.append(Row(str(shape), kernel.name, args.group_size, seconds, via, gflops, nbytes / seconds / 1e9,
                            numpy_s, numpy_gflops, gflops / numpy_gflops, correct, message, list(first.workgroups),
                            torch_int4_s=torch_times.int4_s if torch_times else None,
                            torch_fp32_s=torch_times.fp32_s if torch_times else None,
                            speedup_vs_torch_int4=(torch_times.int4_s / seconds
                                                   if torch_times and torch_times.int4_s else None)))
            print(f"{shape} {kernel.name}: {seconds * 1e3:.3f} ms ({via}), {gflops:.2f} GFLOP/s, "
                  f"numpy {numpy_gflops:.2f} GFLOP/s, {'ok' if correct else 'WRONG: ' + message}", flush=True)

    _print_table(rows, f"q4gsw kernels on {info.name} ({backend.name}); numpy fp32 on {platform.processor() or 'CPU'}"
                       f" with {os.cpu_count()} cores")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "backend": backend.name, "adapter": info.as_dict(), "timing": "gpu" if session.timestamps else "wall",
        "group_size": args.group_size, "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "numpy": np.__version__, "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"wrote {args.json}")
    return 0 if all(r.correct is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
