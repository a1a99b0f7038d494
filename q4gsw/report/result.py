"""The typed result of one case, shared by the engine, the reports and the CI tooling.

A `Result` is written to results.json as nested objects whose keys are exactly the dataclass field
names; `Result.from_dict` reads them back into the same types, so a renamed field is a load error in
one place rather than a blank report cell. The run's exit code is decided in verdict.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from q4gsw.matrix.values import DEFAULT_OP, AdapterInfo, Config, Errors, Tolerance
from q4gsw.ops import op_for, registry

STATUSES = ("pass", "fail", "skip", "unsupported")
RESULT_SCHEMA_VERSION = 3  # 3: a case's shape is its op's dims and shape text (2: M, K, N, group_size)


@dataclass(frozen=True)
class Shape:
    """A case's shape in its op's words: the dims by the op's names and the text the op shows them in."""

    dims: dict[str, int] = field(default_factory=dict, hash=False)
    text: str = ""


@dataclass(frozen=True)
class Timings:
    """Seconds per stage (None: the stage did not run in this case) and the kernel's rate."""

    export_s: float | None = None
    unpack_s: float | None = None
    golden_s: float | None = None
    gpu_s: float | None = None  # timestamp queries where the adapter has them, else the dispatch's wall time
    gpu_wall_s: float | None = None  # first dispatch including pipeline creation
    gpu_timing: str = ""  # "gpu" (timestamp queries), "wall", or "unmeasured" (timestamps read 0)
    gpu_samples_s: tuple[float, ...] = ()  # each timed repeat (bench: --repeats > 1), for its median and spread
    gpu_warmup_s: float | None = None  # back-to-back load before the timed repeats (case.warmup_for)
    compare_s: float | None = None
    total_s: float | None = None
    gflops: float | None = None
    fixture_export_s: float | None = None  # how long the fixture took to build, even when it came from the cache
    fixture_golden_s: float | None = None


@dataclass(frozen=True)
class Provenance:
    """Where the case's bytes came from: fixture key, seeds, package versions, kernel source."""

    fixture: str = ""
    weights: str = ""
    weight_seed: int = 0
    input: str = ""
    kernel_source: str = ""  # file the kernel text came from (or "generated:<template>", "mutant:<name>")
    source_notes: tuple[str, ...] = ()  # adjustments made to the text for this implementation, if any
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    config: str
    backend: str
    status: str  # one of STATUSES
    message: str
    case_id: str = ""
    webgpu: str = ""
    tier: str = ""
    suite: str = ""
    op: str = ""  # the operator under test (q4gsw/ops/<op>/)
    kernel: str = ""
    input: str = ""
    role: str = "subject"  # subject, reference (a known-correct kernel) or mutant (must fail)
    routed: str = ""  # the variant ExecuTorch's runtime would pick for this config on this adapter, if known
    shape: Shape = field(default_factory=Shape)
    tolerance: Tolerance | None = None
    upstream: str = ""  # verdict under the upstream test's own abs-or-rel tolerance, where one is declared
    errors: Errors | None = None
    adapter: AdapterInfo | None = None
    timings: Timings = field(default_factory=Timings)
    workgroups: tuple[int, ...] = ()
    peak_rss_bytes: int = 0
    provenance: Provenance = field(default_factory=Provenance)
    reproduce: str = ""
    log: str = ""  # library output of a failing case's child (kept out of the console)
    drift_factor: float | None = None  # the config's matrix.toml drift_factor (None: --drift-factor, default 2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Result:
        return _build(Result, data)

    @property
    def max_abs(self) -> float | None:
        return self.errors.max_abs if self.errors else None

    @property
    def headroom(self) -> float | None:
        return self.errors.headroom if self.errors else None


_NESTED = {"shape": Shape, "tolerance": Tolerance, "errors": Errors, "adapter": AdapterInfo,
           "timings": Timings, "provenance": Provenance}
_TUPLES = {"worst_index", "first_nonfinite", "features", "workgroups", "source_notes", "gpu_samples_s"}


def _build(cls: type, data: dict[str, Any]) -> Any:
    """A dataclass from its as_dict() form; unknown keys are ignored (written by a newer q4gsw)."""
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            continue
        if key in _NESTED and isinstance(value, dict):
            value = _build(_NESTED[key], value)
        elif key in _TUPLES and isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return cls(**values)


class ReportNotWritten(RuntimeError):
    """A report file could not be written (a full disk, a read-only folder); the previous file is unchanged."""


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: into PATH.tmp, flushed to disk, then renamed over `path`. On any failure
    (issue 22: a full disk left results.json.tmp behind) the .tmp this call created is removed, the previous file
    at `path` stays as it was, and ReportNotWritten says why in one line."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    created = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as out:
            created = True
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # a full disk can surface only here: before the rename, never after it
        tmp.replace(path)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise ReportNotWritten(f"{path} not written ({exc.strerror or exc}): the previous {path.name} there, if "
                               "any, is unchanged") from exc


def write_results(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    """results.json, replaced whole or left as it was (ReportNotWritten)."""
    # The version is this q4gsw's, whatever `meta` carries: a merge of schema 2 files kept their schema_version 2 over
    # schema 3 shapes, and reading that back as schema 2 erased every case's shape.
    meta = {k: v for k, v in meta.items() if k != "schema_version"}
    payload = {"schema_version": RESULT_SCHEMA_VERSION, **meta, "results": [r.as_dict() for r in results]}
    replace_file(path, json.dumps(payload, indent=2, default=_json_default).encode("utf-8"))


class ResultsSchemaError(ValueError):
    """A results.json this q4gsw cannot read into its types; str() is one line: the file and why."""

    def __init__(self, path: Path, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class NotResults(ValueError):
    """A JSON file that is no results.json (a bench JSON, another tool's file): nothing is read or written from it."""


def read_results(path: Path) -> tuple[list[Result], dict[str, Any]]:
    """(results, the rest of the file); NotResults for a JSON file that is no results.json, which `report` would
    otherwise have re-rendered as an empty run over the junit.xml and summary.md beside it. One written before
    schema 3 (a baseline kept from an older q4gsw) has each case's shape as M, K, N, group_size: it is converted
    into the case's op's dims (ResultsSchemaError where it cannot be)."""
    payload = json.loads(path.read_text())
    if isinstance(payload, dict) and isinstance(payload.get("rows"), list) and "results" not in payload:
        raise NotResults("is a bench JSON (from `q4gsw bench`), not a results.json")
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise NotResults("is not a q4gsw results.json (no 'results' list)")
    for index, entry in enumerate(payload["results"]):
        if not isinstance(entry, dict):
            raise NotResults(f"is not a q4gsw results.json (results[{index}] is a {type(entry).__name__}, not an "
                             "object)")
    results = results_from_payload(path, payload)
    payload.pop("results")
    return results, payload


def results_from_payload(path: Path, payload: dict[str, Any]) -> list[Result]:
    """The cases of a parsed results.json (`path` names it in errors), converted from schema 2 where it is older."""
    raw = payload.get("results", [])
    version = payload.get("schema_version", RESULT_SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):  # compared below: '2' < 3 was a TypeError
        raise ResultsSchemaError(path, f"schema_version is {version!r}, not a whole number: no q4gsw writes that")
    if not 1 <= version <= RESULT_SCHEMA_VERSION:
        raise ResultsSchemaError(path, f"schema_version is {version}, which this q4gsw cannot read (it reads 1 to "
                                       f"{RESULT_SCHEMA_VERSION}; " + ("a newer q4gsw wrote it)" if version > 1 else
                                                                       "no q4gsw writes that)"))
    if version < RESULT_SCHEMA_VERSION:
        raw = [_shape_from_v2(path, r) for r in raw]
    for entry in raw:
        shape = entry.get("shape", {})
        if not (isinstance(shape, dict) and isinstance(shape.get("dims", {}), dict) and set(shape) <= {"dims", "text"}):
            raise ResultsSchemaError(path, f"case {entry.get('case_id') or entry.get('config')!r}: shape {shape!r} "
                                           f"is not schema {RESULT_SCHEMA_VERSION}'s {{dims, text}}")  # was dropped
    return [Result.from_dict(r) for r in raw]


def _shape_from_v2(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    old = data.get("shape") or {}
    case = data.get("case_id") or data.get("config")
    if not isinstance(old, dict):
        raise ResultsSchemaError(path, f"case {case!r} of schema 2 has the shape {old!r}, not an object of M, K, N, "
                                       "group_size")
    if "dims" in old:  # already schema 3's form (a merge before the fix above labelled it 2): nothing to convert
        return data
    if not old.get("M"):  # a config that failed before its shape was known
        return {**data, "shape": {"dims": {}, "text": ""}}
    op_name = data.get("op") or DEFAULT_OP  # schema 1 had no op: every case was linear_q4gsw
    if op_name not in registry():
        raise ResultsSchemaError(path, f"case {case!r} of schema 2 is of op {op_name!r}, which this q4gsw does not "
                                       f"know ({', '.join(registry())}), so its shape cannot be converted")
    op = op_for(op_name)
    missing = [k for k in ("M", "K", "N", "group_size") if k not in old]
    wrong = [f"{k} = {old[k]!r}" for k in ("M", "K", "N", "group_size") if k in old and (
        isinstance(old[k], bool) or not isinstance(old[k], int))]
    dims = op.dims_from_v2(old) if not missing and not wrong else None
    if dims is None:
        why = (f"its shape lacks {', '.join(missing)}" if missing else f"its shape has {', '.join(wrong)}, not whole "
               "numbers" if wrong else f"op {op_name} has no schema 2 form")
        raise ResultsSchemaError(path, f"case {case!r} of schema 2 cannot be converted to schema "
                                       f"{RESULT_SCHEMA_VERSION}: {why}")
    return {**data, "shape": {"dims": dims, "text": op.shape_text(dims)}}


def shape_of(config: Config) -> Shape:
    """A config's shape as a result records it."""
    return Shape(dims=dict(config.dims), text=op_for(config).shape_text(config.dims))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


def counts(results: list[Result]) -> dict[str, int]:
    return {status: sum(1 for r in results if r.status == status) for status in STATUSES}


def summary_line(results: list[Result]) -> str:
    c = counts(results)
    line = f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"
    return line + (f", {c['unsupported']} unsupported" if c["unsupported"] else "")


def format_number(value: Any, spec: str, missing: str = "") -> str:
    """A recorded number for a report cell; `missing` when absent, the raw text when not numeric."""
    if value is None or value == "":
        return missing
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return format(number, spec) if math.isfinite(number) or "e" in spec or "f" in spec else str(value)
