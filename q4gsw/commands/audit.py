"""Tolerance audit: every config's tolerance set against an a-priori fp32 error model.

`python -m q4gsw audit [--results DIR ...]` computes, per config and input, from the config's real
quantized weights (the fixture unpacked from the .pte) and its real input:

  S[m,n]   = sum_k |x[m,k]| * |w[n,k]|                     (w dequantized exactly, in fp64)
  worst    = gamma_{K+1} * S,  gamma_j = j*u / (1 - j*u),  u = 2^-24: deterministic, any summation order
             (Higham, Accuracy and Stability, 2nd ed., sec. 3.1).
  hm_bound = (exp(lam*sqrt(K+1)*u + (K+1)*u^2/(1-u)) - 1) * S, lam = sqrt(2 ln(2 (K+1) M N / 1e-3)):
             probabilistic, all M*N outputs at once with probability >= 1 - 1e-3 (Higham & Mary 2019).
  est      = sqrt(2 ln(M N)) * u/sqrt(3) * sqrt(sum_j P_j^2 + 2 sum_j t_j^2): the largest error a
             SEQUENTIAL fp32 kernel is expected to make (t_j = x_j*w_j, P_j the running partial sums).
  step     = max_k |x[m,k]| * s[n, k // group_size]
             What ONE nibble off by one at output (m,n)'s most sensitive weight changes y[m,n].

and sets them beside the tolerance T[m,n] = atol + rtol*|golden[m,n]| and the measured max error on
every backend with results (results.json written by `run`). Flags:

  LOOSE  T > 10*worst everywhere: admits errors 10x beyond anything fp32 rounding can produce. A LOOSE row
         fails the audit (exit 1) unless its tolerance's justification says why, after the marker
         `LOOSE:` (e.g. "LOOSE: f16 accumulation is outside the fp32 model; ...").
  BLIND  T >= step for most outputs: a single wrong nibble would pass the check.
  TIGHT  est > T/3 somewhere: a correct sequential fp32 kernel could fail (less than 3x margin).
  FLAKY  measured margin (1/headroom) < max(3, spread), spread = largest / median measured max error
         across backends, kernels and runs: another backend or kernel variant could cross the line.
         Runs made under a kernel's or backend's own tolerance are audited in a row of their own.
  MODEL? measured error above the deterministic bound: the kernel is not an fp32 dot product
         (or the model is wrong) — investigate before trusting the tolerance.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from q4gsw.ops import op_for
from q4gsw.ops.error_model import DELTA, ErrorModel, U
from q4gsw.report import verdict

LOOSE_FACTOR = 10.0
LOOSE_MARKER = re.compile(r"\bLOOSE:\s*\S")  # a justification that says why its tolerance may be LOOSE
TIGHT_MARGIN = 3.0
FLAKY_MARGIN = 3.0


# ------------------------------------------------------------------------------------------------
# Audit of one config x input
# ------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    backend: str
    kernel: str
    adapter: str
    status: str
    max_abs: float
    headroom: float  # max |err| / (atol + rtol |g|) under the tolerance the run used
    source: str
    atol: float = math.nan  # the tolerance the run used (NaN: unknown)
    rtol: float = math.nan
    tolerance_source: str = "config"  # config, kernel:<name> or backend:<name> (matrix.tolerance_for)
    justification: str = ""  # the justification of the tolerance the run used


@dataclass
class AuditRow:
    config: str
    tolerance_source: str  # "config", or the kernel/backend override this row audits
    suite: str
    tier: str
    input: str
    shape: str  # the config's shape in its op's words
    dims: dict[str, int]  # the config's dims by its op's names
    K: int  # the length of each output's fp32 sum, as the error model counts it (a gather: 0)
    weights: str
    atol: float
    rtol: float
    S_max: float
    worst_max: float  # max over outputs of gamma_{K+1} S
    hm_max: float
    est_max: float
    tol_min: float  # min over outputs of atol + rtol |g|
    tol_median: float
    worst_over_tol: float  # max over outputs of worst / T  (> 1: T is below the deterministic bound there)
    hm_over_tol: float
    est_over_tol: float  # max over outputs of est / T
    tol_over_worst_min: float  # min over outputs of T / worst (> LOOSE_FACTOR: LOOSE)
    step_median: float
    step_over_tol_median: float  # median over outputs of step / T (< 1: one wrong nibble passes)
    blind_fraction: float  # share of outputs whose T >= step
    measured: list[Measured] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    suggested_atol: float = 0.0
    justification: str = ""  # the audited tolerance's

    @property
    def unjustified_loose(self) -> bool:
        """LOOSE, and the justification gives no reason after LOOSE_MARKER: the audit fails."""
        return "LOOSE" in self.flags and not LOOSE_MARKER.search(self.justification)

    @property
    def measured_max(self) -> float:
        values = [m.max_abs for m in self.measured if math.isfinite(m.max_abs)]
        return max(values) if values else math.nan

    def headroom_of(self, m: Measured) -> float:
        """The run's headroom if it used this tolerance, else the bound max|err| / min T (conservative)."""
        if m.atol == self.atol and m.rtol == self.rtol and math.isfinite(m.headroom):
            return m.headroom
        return m.max_abs / self.tol_min if self.tol_min > 0 else math.inf

    @property
    def measured_headroom(self) -> float:
        values = [self.headroom_of(m) for m in self.measured if math.isfinite(m.max_abs)]
        return max(values) if values else math.nan


def audit_case(config: Any, input_name: str, model: ErrorModel, g: np.ndarray, atol: float, rtol: float,
               measured: list[Measured], tolerance_source: str = "config", justification: str = "") -> AuditRow:
    T = atol + rtol * np.abs(g)
    live = model.S > 0
    worst = model.worst
    with np.errstate(divide="ignore", invalid="ignore"):
        worst_over_tol = float((worst / T).max())
        tol_over_worst = float((T[live] / worst[live]).min()) if live.any() else math.inf
        step_over_tol = model.step / T
    row = AuditRow(
        config=config.name, tolerance_source=tolerance_source, suite=config.suite, tier=config.tier,
        input=input_name, shape=op_for(config).shape_text(config.dims), dims=dict(config.dims), K=model.K,
        weights=config.weights, atol=atol, rtol=rtol,
        S_max=float(model.S.max()), worst_max=float(worst.max()), hm_max=float(model.hm_bound.max()),
        est_max=float(model.est.max()), tol_min=float(T.min()), tol_median=float(np.median(T)),
        worst_over_tol=worst_over_tol, hm_over_tol=float((model.hm_bound / T).max()),
        est_over_tol=float((model.est / T).max()), tol_over_worst_min=tol_over_worst,
        step_median=float(np.median(model.step)), step_over_tol_median=float(np.median(step_over_tol)),
        blind_fraction=float(np.mean(model.step <= T)), measured=measured, justification=justification)
    # The smallest atol (at this rtol) that keeps TIGHT_MARGIN over the statistical estimate everywhere.
    need = TIGHT_MARGIN * model.est - rtol * np.abs(g)
    row.suggested_atol = float(max(need.max(), 0.0))
    row.flags = flags_for(row)
    return row


def measured_spread(measured: list[Measured]) -> float:
    """Largest measured max error over the median one (across backends, kernels and runs): how far the
    worst case strays from the typical one. The median keeps one near-exact kernel from inflating it."""
    values = sorted(m.max_abs for m in measured if math.isfinite(m.max_abs) and m.max_abs > 0)
    return values[-1] / float(np.median(values)) if values else 1.0


def flags_for(row: AuditRow) -> list[str]:
    flags = []
    if row.tol_over_worst_min > LOOSE_FACTOR:
        flags.append("LOOSE")
    if row.blind_fraction > 0.5:
        flags.append("BLIND")
    if row.est_over_tol > 1 / TIGHT_MARGIN:
        flags.append("TIGHT")
    finite = [m.max_abs for m in row.measured if math.isfinite(m.max_abs) and m.max_abs > 0]
    headroom = row.measured_headroom
    if (row.measured and math.isfinite(headroom) and headroom > 0
            and 1 / headroom < max(FLAKY_MARGIN, measured_spread(row.measured))):
        flags.append("FLAKY")
    if finite and max(finite) > row.worst_max:
        flags.append("MODEL?")
    return flags


# ------------------------------------------------------------------------------------------------
# Results and CLI
# ------------------------------------------------------------------------------------------------


def load_measurements(paths: list[Path]) -> dict[tuple[str, str], list[Measured]]:
    from q4gsw.report.result import read_results

    found: dict[tuple[str, str], list[Measured]] = {}
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            inside = sorted(path.rglob("results.json")) + sorted(path.rglob("mutants.json"))
            if not inside:  # not an error (a fresh checkout's results/), but the audit then has no measurements
                print(f"warning: {path}: no results.json or mutants.json in it", file=sys.stderr)
            files.extend(inside)
    for file in files:
        if file.name == "mutants.json":
            _load_mutant_records(file, found)
            continue
        try:
            results, _ = read_results(file)
        except (OSError, ValueError, KeyError, TypeError):
            print(f"warning: {file}: not a q4gsw results.json, ignored", file=sys.stderr)
            continue
        for r in results:
            if r.status not in ("pass", "fail") or r.errors is None:
                continue
            tol = r.tolerance
            found.setdefault((r.config, r.input), []).append(Measured(
                backend=r.backend, kernel=r.kernel, adapter=r.adapter.name if r.adapter is not None else "",
                status=r.status, max_abs=float(r.errors.max_abs),
                headroom=math.nan if r.errors.headroom is None else float(r.errors.headroom), source=str(file),
                atol=float(tol.atol) if tol is not None else math.nan,
                rtol=float(tol.rtol) if tol is not None else math.nan,
                tolerance_source=tol.source if tol is not None else "config",
                justification=tol.justification if tol is not None else ""))
    return found


def _load_mutant_records(file: Path, found: dict[tuple[str, str], list[Measured]]) -> None:
    """The correct kernels of a `mutants` run (notably the sequential reference) are measurements too."""
    try:
        payload = json.loads(file.read_text())
        backend = str(payload.get("backend", ""))
        for r in payload.get("records", []):
            if r.get("role") != "correct" or r.get("status") not in ("pass", "fail") or "max_abs" not in r:
                continue
            found.setdefault((r["config"], r["input"]), []).append(Measured(
                backend=backend, kernel=f"{r['kernel']} (mutants)", adapter=str(r.get("adapter", "")),
                status=r["status"], max_abs=float(r["max_abs"]), headroom=float(r.get("headroom", math.nan)),
                source=str(file), atol=float(r.get("atol", math.nan)), rtol=float(r.get("rtol", math.nan))))
    except (OSError, ValueError, KeyError, TypeError):
        print(f"warning: {file}: not a q4gsw mutants.json, ignored", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from q4gsw.matrix.load import TIERS

    parser = argparse.ArgumentParser(prog="python -m q4gsw audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default="matrix.toml")
    parser.add_argument("--results", action="append", type=Path, default=[], metavar="DIR",
                        help="results.json files or folders searched for them (default: results/ if present)")
    parser.add_argument("--tier", action="append", choices=TIERS, help="tiers (default: required)")
    parser.add_argument("--suite", action="append", help="suites (default: all)")
    parser.add_argument("--config", action="append", default=[], metavar="NAME", help="only these configs (any tier)")
    parser.add_argument("--op", action="append", default=[], metavar="OP", help="only these ops' configs")
    parser.add_argument("--cache", type=Path, help="fixture cache (default: $Q4GSW_CACHE or ~/.cache/q4gsw)")
    parser.add_argument("--fixtures", type=Path, help="read fixtures from DIR/<config>/ instead of the cache")
    parser.add_argument("--json", type=Path, default=Path("results/audit.json"), help="JSON output path")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any row is flagged")
    parser.add_argument("--tolerance", metavar="ATOL,RTOL",
                        help="what-if: audit this tolerance instead of the configs' own (e.g. 1e-3,1e-2)")
    return parser


def _fixture(config: Any, args: argparse.Namespace) -> Any:
    from q4gsw.export.fixtures import default_cache_dir, ensure_fixture, verify_fixture

    if args.fixtures is not None:
        return verify_fixture(args.fixtures / config.name, config)
    return ensure_fixture(config, args.cache or default_cache_dir(), progress=lambda m: print(f"  {m}", flush=True))


def audit_config(config: Any, fixture: Any, measurements: dict[tuple[str, str], list[Measured]],
                 tolerance: tuple[float, float] | None = None) -> list[AuditRow]:
    atol, rtol = tolerance or (config.tolerance.atol, config.tolerance.rtol)
    op = op_for(config)
    packed = fixture.constants(config)
    rows = []
    for input_name in config.inputs:
        x = op.make_input(input_name, config)
        g = fixture.golden(input_name)
        if g is None:
            g = op.golden(x, packed)
        model = op.error_model(x, packed)
        if model is None:
            print(f"note: op '{op.name}' has no error model: config '{config.name}' is not audited", file=sys.stderr)
            return rows
        measured = measurements.get((config.name, input_name), [])
        # Runs under a kernel's or backend's own tolerance are audited against that tolerance, in their own row.
        overrides: dict[str, list[Measured]] = {}
        for m in measured:
            if m.tolerance_source != "config" and math.isfinite(m.atol) and math.isfinite(m.rtol):
                overrides.setdefault(m.tolerance_source, []).append(m)
        own = [m for m in measured if m.tolerance_source == "config" or m.tolerance_source not in overrides]
        rows.append(audit_case(config, input_name, model, g, atol, rtol, own,
                               justification="" if tolerance else config.tolerance.justification))
        if tolerance is None:
            for source, runs in sorted(overrides.items()):
                rows.append(audit_case(config, input_name, model, g, runs[0].atol, runs[0].rtol, runs, source,
                                       runs[0].justification))
    return rows


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2g}"


def print_table(rows: list[AuditRow]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="tolerance audit (fp32 error model; docs/error-model.md)")
    for column in ("config", "input", "K", "max S", "worst γS", "HM bound", "est (seq)", "measured max",
                   "tol min", "tol median", "est/tol", "step median", "step/tol", "flags"):
        table.add_column(column, justify="left" if column in ("config", "input", "flags") else "right")
    for r in rows:
        name = r.config if r.tolerance_source == "config" else escape(f"{r.config} [{r.tolerance_source}]")
        table.add_row(name, r.input, str(r.K), _fmt(r.S_max), _fmt(r.worst_max), _fmt(r.hm_max),
                      _fmt(r.est_max), _fmt(r.measured_max), _fmt(r.tol_min), _fmt(r.tol_median),
                      _fmt(r.est_over_tol), _fmt(r.step_median), _fmt(r.step_over_tol_median),
                      " ".join(r.flags) or "ok")
    Console(width=200).print(table)


def loose_errors(rows: list[AuditRow], matrix: str) -> list[str]:
    """One error line per LOOSE row whose justification gives no reason (the tolerance is the user's: name it and
    the two ways out)."""
    lines = []
    for r in (r for r in rows if r.unjustified_loose):
        where = "its justification" if r.tolerance_source == "config" else f"the {r.tolerance_source} tolerance's"
        lines.append(f"error: {matrix}: config '{r.config}' ({r.input}): tolerance atol={r.atol:g}, rtol={r.rtol:g} "
                     f"is LOOSE ({r.tol_over_worst_min:.3g}x the fp32 worst case at its tightest output): tighten "
                     f"it (suggested atol {r.suggested_atol:.2g}) or say why in {where} after 'LOOSE:'")
    return lines


def selected_configs(matrix: Any, args: argparse.Namespace) -> tuple[Any, ...]:
    """The configs --config, --op, --suite and --tier select (every suite by default); MatrixError (one line, exit 2)
    for a name the matrix does not have (select_configs checks each), or a selection of nothing."""
    from q4gsw.cases import select_configs, selects_nothing

    configs, _ = select_configs(matrix, tiers=args.tier, names=args.config, ops=args.op,
                                suites=args.suite or list(dict.fromkeys(c.suite for c in matrix.configs)))
    if not configs:
        raise selects_nothing(matrix, "audit", tuple(args.config), tuple(args.op))
    return configs


def main(argv: list[str] | None = None) -> int:
    from q4gsw.matrix.load import MatrixError, load_matrix

    args = build_parser().parse_args(argv)
    try:
        matrix = load_matrix(args.matrix)
        configs = selected_configs(matrix, args)
        from q4gsw.paths import unusable_output_file

        problem = unusable_output_file(args.json, "audit JSON")
        if problem:
            raise MatrixError("command line", "audit", "--json", problem, "pass another --json")
        for path in args.results:  # a mistyped --results must not audit with no measurements and exit 0
            if not path.exists():
                raise MatrixError("command line", "audit", "--results", f"{path} does not exist",
                                  "pass a results.json or a folder holding them (`q4gsw run --results DIR`)")
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.USAGE
    what_if = None
    if args.tolerance:
        try:
            atol_text, rtol_text = args.tolerance.split(",")
            what_if = (float(atol_text), float(rtol_text))
        except ValueError:
            print(f"error: --tolerance {args.tolerance!r}: expected ATOL,RTOL e.g. 1e-5,1e-4", file=sys.stderr)
            return verdict.USAGE
        print(f"what-if: auditing atol={what_if[0]:g}, rtol={what_if[1]:g} instead of matrix.toml's", flush=True)
    result_paths = args.results or ([Path("results")] if Path("results").is_dir() else [])
    measurements = load_measurements(result_paths)
    rows: list[AuditRow] = []
    for config in configs:

        print(f"audit {config.name} ({op_for(config).shape_text(config.dims)}, weights={config.weights})", flush=True)
        rows.extend(audit_config(config, _fixture(config, args), measurements, what_if))
    print_table(rows)
    overrides = [f"{b.name}:{c}" for b in matrix.backends.values() for c in b.tolerance_overrides]
    if overrides or any(k.tolerance is not None for k in matrix.kernels):
        print("note: backend/kernel tolerance overrides exist; this audit checks the configs' own tolerances",
              file=sys.stderr)
    payload = {"model": {"u": U, "delta": DELTA, "loose_factor": LOOSE_FACTOR, "tight_margin": TIGHT_MARGIN,
                         "flaky_margin": FLAKY_MARGIN, "doc": __doc__},
               "rows": [{**asdict(r), "measured_max": r.measured_max, "measured_headroom": r.measured_headroom}
                        for r in rows]}
    from q4gsw.report.result import ReportNotWritten, replace_file

    try:  # whole or not at all: a full disk leaves the previous audit JSON as it was, and says so
        replace_file(args.json, json.dumps(payload, indent=2, default=float).encode("utf-8"))
    except ReportNotWritten as exc:
        print(f"error: {exc}", file=sys.stderr)
        return verdict.FAILED
    print(f"audit: {args.json}", file=sys.stderr)
    loose = loose_errors(rows, args.matrix)
    for line in loose:
        print(line, file=sys.stderr)
    flagged = [r for r in rows if r.flags]
    return verdict.FAILED if loose or (args.strict and flagged) else verdict.OK
