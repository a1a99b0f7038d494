"""`bench --scoreboard A.json B.json ...`: bench JSONs (written by `q4gsw bench --json`) side by side, per shape.

The files come from outside the run (another machine, another q4gsw, a mistyped name), so each is checked before
anything is printed: a problem is one line naming the file and what is wrong (ScoreboardError, exit 2), never a
traceback; files that are readable but not comparable (different shapes or group sizes) give one warning line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from q4gsw.matrix.values import DEFAULT_OP
from q4gsw.ops import op_for, registry

FIX = "pass files written by `python -m q4gsw bench --json PATH`"
# The row fields the scoreboard reads, and the JSON types each may have (None: a kernel that did not run).
ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "shape": (str,), "kernel": (str,), "time_s": (int, float, type(None)), "gflops": (int, float, type(None)),
    "gbytes_s": (int, float, type(None)), "correct": (bool, type(None)), "message": (str,)}


class ScoreboardError(ValueError):
    """A bench JSON the scoreboard cannot read; the message names the file and what to do."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def read_bench(path: Path, option: str = "--scoreboard", fix: str = FIX) -> dict[str, Any]:
    """One bench JSON, checked: its rows hold every field the scoreboard (and a baseline) reads, with the right
    types. A problem is a ScoreboardError of one line: `option path: problem: fix`."""
    def bad(problem: str) -> ScoreboardError:
        return ScoreboardError(f"{option} {path}: {problem}: {fix}")

    if path.is_dir():
        raise bad("is a folder, not a bench JSON")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bad("no such file") from None
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise bad("is not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise bad(f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(run, dict):
        raise bad(f"holds a JSON {_type_name(run)}, not a bench JSON object")
    if "rows" not in run and "results" in run:
        raise bad("is a q4gsw results.json (from `run` or `report`), not a bench JSON")
    rows = run.get("rows")
    if not isinstance(rows, list):
        raise bad("has no 'rows' list: not a bench JSON")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise bad(f"row {index} is a JSON {_type_name(row)}, not an object")
        for name, types in ROW_FIELDS.items():
            if name not in row:
                raise bad(f"row {index} has no '{name}' field (written by an older or newer q4gsw?)")
            value = row[name]
            # bool is an int to Python; a number field holding true/false is a different file format
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise bad(f"row {index}: '{name}' is a {_type_name(value)}")
    return run


def row_shape(row: dict[str, Any], run: dict[str, Any]) -> tuple[tuple[tuple[str, int], ...], str]:
    """(the dims a bench row ran, as sorted (name, value) pairs; its shape text). A row of bench format 3 records its
    dims; an older one has a linear's MxKxN and the group size bench was asked for, read into the run's op's dims
    the way results.json's schema 2 is (Op.dims_from_v2), and its group size as the op really ran it
    (Op.bench_dims: a per-channel op's spans K). A row neither way is keyed by its text and group size as written."""
    dims = row.get("dims")
    op_name = run.get("op") or DEFAULT_OP
    if not isinstance(dims, dict) and op_name in registry():
        parts = str(row["shape"]).lower().split("x")
        group_size = row.get("group_size", run.get("group_size"))
        if len(parts) == 3 and all(p.isdigit() for p in parts) and isinstance(group_size, int):
            old = dict(zip(("M", "K", "N"), map(int, parts), strict=True))
            converted = op_for(op_name).dims_from_v2({**old, "group_size": group_size})
            dims = op_for(op_name).bench_dims(converted) if converted is not None else None
    if not isinstance(dims, dict):
        return (("shape", row["shape"]), ("group_size", row.get("group_size", run.get("group_size")))), row["shape"]
    text = op_for(op_name).shape_text(dims) if op_name in registry() else str(row["shape"])
    return tuple(sorted(dims.items())), text


def _group_sizes(run: dict[str, Any]) -> list[str]:
    return sorted({str(dict(row_shape(row, run)[0]).get("group_size")) for row in run["rows"]})


def mismatches(runs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """One warning line per way the bench JSONs are not comparable: different shapes, different group sizes."""
    warnings = []
    shapes = [(path, sorted({row_shape(row, run)[1] for row in run["rows"]})) for path, run in runs]
    if len({tuple(s) for _, s in shapes}) > 1:
        listed = "; ".join(f"{path}: {', '.join(s) or 'none'}" for path, s in shapes)
        warnings.append(f"the bench JSONs cover different shapes ({listed}): a shape only some files have is "
                        "compared only among those")
    sizes = [(path, _group_sizes(run)) for path, run in runs]
    if len({tuple(s) for _, s in sizes}) > 1:
        listed = "; ".join(f"{path}: {', '.join(s)}" for path, s in sizes)
        warnings.append(f"the bench JSONs were run with different group sizes ({listed}): their times are not "
                        "of the same work")
    return warnings


def scoreboard(paths: list[Path]) -> tuple[str, list[str]]:
    """(Markdown: per shape, every kernel on every implementation side by side; warning lines). Raises
    ScoreboardError for a file it cannot read, before printing anything."""
    runs = [(path, read_bench(path)) for path in paths]
    lines = ["| shape | kernel | backend (webgpu) | ms | GFLOP/s | GB/s | roofline | vs torch int4 | check |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    rows = [({**row, "shape": row_shape(row, run)[1]}, f"{run.get('backend', '?')} ({run.get('webgpu', '?')})")
            for _, run in runs for row in run["rows"]]
    for row, webgpu in sorted(rows, key=lambda item: (item[0]["shape"], item[0]["time_s"] or math.inf)):
        def num(value: float | None, spec: str, scale: float = 1.0) -> str:
            return format(value * scale, spec) if isinstance(value, int | float) and value else "-"

        check = {True: "ok", False: "WRONG", None: "unsupported" if "needs" in row["message"] else "-"}[row["correct"]]
        lines.append(f"| {row['shape']} | {row['kernel']} | {webgpu} | {num(row['time_s'], '.3f', 1e3)} | "
                     f"{num(row['gflops'], '.1f')} | {num(row['gbytes_s'], '.1f')} | "
                     f"{num(row.get('roofline'), '.0%')} | {num(row.get('speedup_vs_torch_int4'), '.2f')} | {check} |")
    return "\n".join(lines), mismatches(runs)
