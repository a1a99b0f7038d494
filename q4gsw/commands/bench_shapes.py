"""The shapes a bench times: `--shape` in the op's own dims (NAME=VALUE pairs, or the op's shorthand, a linear's
MxKxN), checked as matrix.toml's configs are, and the Config each becomes. Every problem is a MatrixError (one line,
exit 2) before any work."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from q4gsw.matrix.checker import suggest
from q4gsw.matrix.load import Config, MatrixError
from q4gsw.ops import Op, op_for, op_names


def _shape_error(text: str, problem: str, op: Op) -> MatrixError:
    names = [d.name for d in op.dims]
    return MatrixError("command line", "bench", "--shape", f"shape '{text}': {problem}",
                       f"give op {op.name}'s dims as NAME=VALUE: {', '.join(names)} (e.g. "
                       f"{','.join(f'{n}={v}' for n, v in zip(names, (1, 2048, 2048, 32, 64, 64, 64), strict=False))})")



def parse_shape(text: str, op: Op, group_size: int) -> dict[str, int]:
    """A bench shape as the op's dims: NAME=VALUE pairs of the op's dims, or the op's shorthand (a linear's MxKxN).
    A `group_size` dim the text leaves out is bench's --group-size; then the op says what really runs
    (Op.bench_dims). MatrixError (one line, exit 2) for a shape that is not the op's."""
    names = [d.name for d in op.dims]
    dims = op.parse_shorthand(text)
    if dims is None:
        dims = {}
        for part in text.split(","):
            name, sep, value = (piece.strip() for piece in part.partition("="))
            if not sep or not name:
                raise _shape_error(text, f"'{part}' is not NAME=VALUE", op)
            if name not in names:
                raise _shape_error(text, f"{suggest(name, names)}'{name}' is not a dim of op {op.name}", op)
            if name in dims:
                raise _shape_error(text, f"{name} is given twice", op)
            if not (value.isascii() and value.isdigit()):  # '²'.isdigit() too, which int() refuses
                minimum = next(d.minimum for d in op.dims if d.name == name)
                raise _shape_error(text, f"{name}={value} is not a whole number >= {minimum}", op)
            dims[name] = int(value)
    if "group_size" in names:
        dims.setdefault("group_size", group_size)
    missing = [n for n in names if n not in dims]
    if missing:
        raise _shape_error(text, f"lacks {', '.join(missing)}", op)
    for dim in op.dims:  # the shorthand's too: 0x2048x2048 ran and wrote a bench JSON of nothing
        if dims[dim.name] < dim.minimum:
            raise _shape_error(text, f"{dim.name}={dims[dim.name]} is not a whole number >= {dim.minimum}", op)
    return op.bench_dims({n: dims[n] for n in names})


def bench_config(dims: dict[str, int], op_name: str) -> Config:
    """The config bench times a shape as: random weights, the op's synthetic input and bench tolerance."""
    op = op_for(op_name)
    return Config(name="-".join(f"{n}{v}" for n, v in dims.items()), dims=dims,
                  tier="optional", suite="bench", inputs=(op.synthetic_input,), weights="random", weight_seed=0,
                  timeout_s=900.0, tolerance=op.bench_tolerance(dims), op=op_name)


def _numbers_problem(args: argparse.Namespace) -> MatrixError | None:
    """Before any work: a repeat and a group size of at least 1 (0 repeats wrote rows with no samples, a group size
    of 0 divided by zero), a finite warm-up of 0 s or more, and peaks above 0 (a roofline of a negative peak)."""
    wrong = [(option, value, "1 or more") for option, value in (("--repeats", args.repeats),
                                                                 ("--group-size", args.group_size)) if value < 1]
    wrong += [(option, value, "a finite number of seconds >= 0") for option, value in (("--warmup-s", args.warmup_s),)
              if value is not None and not (math.isfinite(value) and value >= 0)]
    wrong += [(option, value, "a finite number > 0") for option, value in (("--peak-gbs", args.peak_gbs),
                                                                            ("--peak-gflops", args.peak_gflops))
              if value is not None and not (math.isfinite(value) and value > 0)]
    if not wrong:
        return None
    option, value, want = wrong[0]
    return MatrixError("command line", "bench", option, f"{value:g} is not {want}", f"pass {option} {want}")


def bench_configs(args: argparse.Namespace) -> tuple[Config, ...]:
    """The configs of the asked shapes (the op's bench shapes by default), each checked by the op's own shape rules
    as matrix.toml's configs are; MatrixError (one line) for an unknown op or a shape the op cannot take. Bench
    times the op's synthetic input, so a rule of that input is met by the shape, not by an option bench lacks."""
    numbers = _numbers_problem(args)
    if numbers is not None:
        raise numbers
    if args.op not in op_names():
        raise MatrixError("command line", "bench", "--op", f"unknown op '{args.op}'",
                          f"{suggest(args.op, list(op_names()))}choose from {', '.join(op_names())}")
    op = op_for(args.op)
    texts = args.shapes or list(op.bench_shapes)
    if not texts:
        raise MatrixError("command line", "bench", "--op", f"op {op.name} declares no bench shapes",
                          f"pass --shape in its dims ({', '.join(d.name for d in op.dims)})")
    configs = []
    for text in texts:
        config = bench_config(parse_shape(text, op, args.group_size), args.op)
        problems = op.shape_problems(config)
        if problems:
            first = problems[0]
            # The op's fix speaks of matrix.toml; a rule of the input (it holds with no input) is not bench's to change
            of_input = first.problem not in {p.problem for p in op.shape_problems(replace(config, inputs=()))}
            fix = (f"bench times the op's '{op.synthetic_input}' input: pass --shape for which this holds"
                   if of_input else first.fix)
            raise MatrixError("command line", "bench", "--shape" if args.shapes else "--op",
                              f"shape {text} for op {args.op}: {first.problem}", fix)
        configs.append(config)
    return tuple(configs)
