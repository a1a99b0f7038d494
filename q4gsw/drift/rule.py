"""Did a change move the numbers? Two runs' results matched case by case (by case id: diff_runs), with the drift
rule (q4gsw.compare.compare is the other thing called compare: one output tensor against its golden).

A case drifted when both runs measured it (errors recorded on both sides) and its error grew beyond its factor:

    drift  <=>  new > factor * max(old, floor)      floor = FLOOR_OF_ATOL * atol   (the case's tolerance)

for its max |err|, and for its median |err| (read from the recorded |err| histograms: a shift of the whole
distribution that leaves the maximum alone). A failed case whose count of non-finite outputs or of writes past
the output grew drifted too, by any amount (its max |err| is over its finite outputs: a NaN more can shrink it). The
factor is the config's `drift_factor` in matrix.toml (recorded in
each result), else --drift-factor, else DEFAULT_FACTOR. The floor makes an exact kernel (0 error in the baseline)
comparable: it drifts once its error exceeds factor * 1e-3 of the smallest bound any element has (atol, where the
golden is 0); with atol = 0 there is no floor, and any error where there was none is drift. Improvements (the
mirror image, old > factor * max(new, floor)) are listed, never counted.

The gate (--fail-on-drift) fails on more than drift (Comparison.gate): a case that stopped passing (pass -> fail,
unsupported or skip), a case the baseline measured that this run covered and did not measure (a deleted kernel, a
kernel whose `when` stopped holding, an empty results file; unless accept_removed), and a comparison of nothing (a
baseline of another backend or op), unless accept_new and every case of this run is new since a baseline of its
backend and kind of kernel (a CI shard of configs added since main's run). The rule and the gate are documented
in docs/results.md, with the exit codes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from q4gsw.report.junit import case_label as case_key  # the id two runs' cases are matched by
from q4gsw.report.result import Result

DEFAULT_FACTOR = 2.0
FLOOR_OF_ATOL = 1e-3
KINDS = ("drift", "status", "improved", "new", "vanished", "same")  # the order a report lists them in
MEASURED = ("pass", "fail")


def error_quantile(histogram: dict[str, Any], q: float) -> float | None:
    """The q-quantile of |y - g| from a recorded histogram (histogram.py): exact zeros count as 0, the log10 bins
    are interpolated linearly, errors outside the binned range sit at its ends; None without a histogram."""
    counts, edges = histogram.get("counts"), histogram.get("log10_edges")
    if not counts or not edges or len(edges) != len(counts) + 1:
        return None
    zero, below, above = (int(histogram.get(k, 0)) for k in ("zero", "below", "above"))
    total = zero + below + sum(counts) + above
    if total == 0:
        return None
    target = q * total
    if target <= zero:
        return 0.0
    seen = zero + below
    if target <= seen:
        return 10.0 ** edges[0]
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            fraction = (target - seen) / count
            return 10.0 ** (edges[index] + fraction * (edges[index + 1] - edges[index]))
        seen += count
    return 10.0 ** edges[-1]


def ratio(old: float, new: float, floor: float) -> float:
    """new / max(old, floor); 1 when both are 0, infinite when only the denominator is."""
    reference = max(old, floor)
    if reference > 0:
        return new / reference
    return 1.0 if new == 0 else math.inf


@dataclass(frozen=True)
class Measure:
    """One error measure of a case in both runs, with its ratio under the drift rule."""

    name: str  # "max |err|" or "median |err|"
    old: float
    new: float
    ratio: float  # new / max(old, floor)
    back: float  # old / max(new, floor): the improvement's ratio
    count: bool = False  # a count of wrong outputs (non-finite, written past the output): any growth is drift

    def text(self) -> str:
        return f"{self.old:.0f} -> {self.new:.0f}" if self.count else f"{self.old:.3g} -> {self.new:.3g}"

    def grew(self, factor: float, floor: float) -> bool:
        return self.new > self.old if self.count else self.new > factor * max(self.old, floor)

    def shrank(self, factor: float, floor: float) -> bool:
        return self.old > self.new if self.count else self.old > factor * max(self.new, floor)


@dataclass(frozen=True)
class CaseDelta:
    """A case of either run and how it moved."""

    key: str
    kind: str  # one of KINDS
    old: Result | None
    new: Result | None
    factor: float = DEFAULT_FACTOR
    floor: float = 0.0
    measures: tuple[Measure, ...] = ()
    why: str = ""  # a vanished case: what this run says about its kernel

    @property
    def regressed(self) -> bool:
        """It passed in the baseline and does not now (fail, unsupported, skip); a mutant caught now is no loss."""
        return self.kind == "status" and self.old is not None and self.new is not None and \
            self.old.status == "pass" and self.new.role != "mutant"

    @property
    def removed(self) -> bool:
        """The baseline measured it (pass or fail) and these results do not have it."""
        return self.kind == "vanished" and self.old is not None and self.old.status in MEASURED

    @property
    def headroom_ratio(self) -> float | None:
        old, new = (r.errors.headroom if r is not None and r.errors is not None else None for r in (self.old, self.new))
        if old is None or new is None or not all(map(math.isfinite, (old, new))):
            return None
        return ratio(old, new, 0.0)

    def reason(self) -> str:
        """One line: why the case is listed (the measures that moved past the factor, or the status change)."""
        if self.kind == "status":
            said = f": {self.new.message}" if self.regressed and self.new and self.new.message else ""
            return f"status {self.old.status if self.old else '-'} -> {self.new.status if self.new else '-'}{said}"
        if self.removed and self.old is not None:
            return f"measured ({self.old.status}) in the baseline, not now: {self.why}"
        if self.kind == "drift":
            grown = [m for m in self.measures if m.grew(self.factor, self.floor)]
            return "; ".join(f"{m.name} {m.text()}" + ("" if m.count else f" ({_times(m.ratio)})")
                             for m in grown) + (f" > factor {self.factor:g}" if any(not m.count for m in grown)
                                                else "")
        if self.kind == "improved":
            shrunk = [m for m in self.measures if m.shrank(self.factor, self.floor)]
            return "; ".join(f"{m.name} {m.text()}" + ("" if m.count else f" (/{m.back:.3g})")
                             for m in shrunk)
        return self.kind


def _times(value: float) -> str:
    return "new where the baseline had none" if math.isinf(value) else f"{value:.2f}x"


@dataclass(frozen=True)
class Comparison:
    """Every case of both runs, matched by case id; `not_compared` baseline cases were outside this run's scope."""

    baseline: str  # what the baseline was read from, for the reports
    deltas: tuple[CaseDelta, ...]
    factor: float = DEFAULT_FACTOR
    not_compared: int = 0
    accept_removed: bool = False  # --accept-removed: cases the baseline measured and this run did not are no loss
    nothing_why: str = ""  # when no case was compared: what each side holds
    accept_new: bool = False  # --accept-new: a run of only new cases (nothing to compare) holds the gate
    # (backend, kind of kernel: kernel_family) pairs the baseline measured, read by accept_new
    baseline_kinds: frozenset[tuple[str, str]] = frozenset()

    @property
    def all_new(self) -> int:
        """How many cases this run measured, all new since a baseline of their backend, when that is all it holds
        (nothing compared, no measured case missing now); 0 otherwise. A baseline of another backend is never 'all
        new', nor one of another kind of kernel (q4gsw's, a `check` kernel's, an ExecuTorch tree's: `run --executorch`
        against a run of q4gsw's kernels). A baseline row that measured nothing (a config skipped there, measured
        now) is no removal."""
        if self.compared or self.removed:
            return 0
        new = [d.new for d in self.of("new") if d.new is not None and d.new.status in MEASURED]
        return len(new) if new and all(_kind(r) in self.baseline_kinds for r in new) else 0

    @property
    def new_accepted(self) -> bool:
        return self.accept_new and self.all_new > 0

    def of(self, kind: str) -> list[CaseDelta]:
        return [d for d in self.deltas if d.kind == kind]

    @property
    def drifted(self) -> list[CaseDelta]:
        return self.of("drift")

    @property
    def regressed(self) -> list[CaseDelta]:
        return [d for d in self.deltas if d.regressed]

    @property
    def removed(self) -> list[CaseDelta]:
        return [d for d in self.deltas if d.removed]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of(kind)) for kind in KINDS}

    @property
    def compared(self) -> int:
        c = self.counts()
        return sum(c[k] for k in ("drift", "status", "improved", "same"))

    def gate(self) -> list[str]:
        """Why the gate fails (--fail-on-drift), one line each; [] when it holds."""
        lines = [f"DRIFT {d.key}: {d.reason()}" for d in self.drifted]
        lines += [f"REGRESSED {d.key}: {d.reason()}" for d in self.regressed]
        if not self.accept_removed:
            lines += [f"REMOVED {d.key}: {d.reason()} (--accept-removed accepts it)" for d in self.removed]
        if not self.compared and not self.new_accepted:
            lines.append(f"NOTHING COMPARED: 0 cases compared with {self.baseline}: {self.nothing_why}")
        return lines

    def gate_line(self) -> str:
        """The gate's verdict in one line."""
        if self.new_accepted:
            return f"gate: holds (nothing compared: {self.all_new} cases new since the baseline, accepted)"
        if not self.compared:
            return "gate: fails: nothing compared"
        parts = [(len(self.drifted), "drifted"), (len(self.regressed), "stopped passing")]
        if not self.accept_removed:
            parts.append((len(self.removed), "removed"))
        failing = ", ".join(f"{n} {what}" for n, what in parts if n)
        if failing:
            return f"gate: fails: {failing}"
        accepted = f" ({len(self.removed)} removed, accepted)" if self.removed else ""
        return f"gate: holds{accepted}"

    def line(self) -> str:
        """The one-line verdict of the comparison."""
        c = self.counts()
        compared = self.compared
        cases = "case" if compared == 1 else "cases"
        text = (f"{c['drift']} drifted, {c['status']} changed status, {c['improved']} improved, {c['new']} new, "
                f"{c['vanished']} vanished ({compared} {cases} compared with {self.baseline})")
        return text + (f"; {self.not_compared} baseline cases outside this run not compared" if self.not_compared
                       else "")

    def drift_by_case(self) -> dict[str, str]:
        """case id -> why it fails the gate (drifted, stopped passing), for the per-case reports (junit.xml)."""
        return {d.key: d.reason() for d in (*self.drifted, *self.regressed)}


def measures(old: Result, new: Result, floor: float) -> tuple[Measure, ...]:
    """The error measures both runs recorded: max |err|, the median |err| where both have a histogram, and the counts
    of non-finite outputs and of writes past the output (a failed case's)."""
    pairs = [("max |err|", old.errors.max_abs if old.errors else None, new.errors.max_abs if new.errors else None)]
    if old.errors is not None and new.errors is not None:
        pairs.append(("median |err|", error_quantile(old.errors.histogram, 0.5),
                      error_quantile(new.errors.histogram, 0.5)))
    found = []
    for name, before, after in pairs:
        if isinstance(before, int | float) and isinstance(after, int | float) and \
                math.isfinite(before) and math.isfinite(after):
            found.append(Measure(name, float(before), float(after), ratio(before, after, floor),
                                 ratio(after, before, floor)))
    if old.errors is not None and new.errors is not None:
        # A failed case's max |err| is over its finite outputs: one NaN more can leave it smaller ('improved').
        for name, attribute in (("non-finite outputs", "nonfinite"), ("writes past the output", "guard_violations")):
            before, after = getattr(old.errors, attribute), getattr(new.errors, attribute)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in (before, after)) and (before or after):
                found.append(Measure(name, float(before), float(after), ratio(before, after, 0.0),
                                     ratio(after, before, 0.0), count=True))
    return tuple(found)


def floor_for(old: Result, new: Result) -> float:
    """FLOOR_OF_ATOL of the atol the new run applied (the baseline's where the new one has none)."""
    tolerance = new.tolerance or old.tolerance
    return FLOOR_OF_ATOL * tolerance.atol if tolerance is not None else 0.0


def delta(key: str, old: Result, new: Result, default_factor: float) -> CaseDelta:
    factor = new.drift_factor or default_factor
    floor = floor_for(old, new)
    # A mutant's error is meant to be large: how large is no kernel's accuracy, so it is never drift.
    measured = old.status in MEASURED and new.status in MEASURED and new.role != "mutant"
    found = measures(old, new, floor) if measured else ()
    if old.status != new.status:
        kind = "status"
    elif any(m.grew(factor, floor) for m in found):
        kind = "drift"
    elif any(m.shrank(factor, floor) for m in found):
        kind = "improved"
    else:
        kind = "same"
    return CaseDelta(key, kind, old, new, factor, floor, found)


def _badness(result: Result) -> tuple[float, ...]:
    """How badly a case went, to pick among rows of one case id: measured over not (a skip or unsupported row beside
    a measurement is another shard's), a failure over a pass, then more non-finite outputs and a larger error."""
    e = result.errors
    worst = [e.nonfinite, e.guard_violations, e.max_abs] if e is not None else []
    numbers = [float(v) if isinstance(v, int | float) and not math.isnan(v) else math.inf for v in worst]
    return (float(result.status in MEASURED), float(result.status == "fail"), *numbers)


def _by_key(results: Iterable[Result], worst: bool) -> dict[str, Result]:
    """Results by case id. One case id in several rows (two runs of one backend merged, a row repeated by shards)
    is the strictest choice for the gate: the worst row of the new results, the best measured row of the baseline;
    a first-come row could hide a failure behind a pass."""
    def rank(result: Result) -> tuple[float, ...]:
        bad = _badness(result)
        return bad if worst else (bad[0], *(-b for b in bad[1:]))

    found: dict[str, Result] = {}
    for r in results:
        key = case_key(r)
        if key not in found or rank(r) > rank(found[key]):
            found[key] = r
    return found


@dataclass(frozen=True)
class Scope:
    """What a run's selection covered: the baseline cases it should have measured again. A `run` of some configs
    (a shard, --config) covers only those configs on its backend, and only cases of its kind of kernel: q4gsw's
    own (matrix), a `check` kernel or an ExecuTorch tree's (executorch)."""

    backend: str
    configs: frozenset[str]
    family: str = "matrix"

    def covers(self, result: Result) -> bool:
        return result.config in self.configs and _kind(result) == (self.backend, self.family)


def kernel_family(source: str) -> str:
    """Where a case's kernel came from (Provenance.kernel_source): check, executorch, mutant or matrix."""
    return next((prefix for prefix in ("check", "executorch", "mutant") if source.startswith(prefix)), "matrix")


def _why_not_now(old: Result, new: dict[str, Result]) -> str:
    """What these results say about a vanished case: its backend or config ran nothing here, or its kernel ran on
    other configs (its `when` stopped holding for this one) or on none (removed, renamed, or its `when` holds
    nowhere now)."""
    measured = [r for r in new.values() if r.status in MEASURED and r.backend == old.backend]
    if not measured:
        return f"backend '{old.backend}' measured no case in these results"
    if not any(r.config == old.config for r in measured):
        return f"config '{old.config}' measured no case on '{old.backend}' in these results"
    if any(r.kernel == old.kernel for r in measured):
        return (f"kernel '{old.kernel}' ran on other configs of this run, not on this one (its `when` or "
                "requirements stopped holding for it?)")
    return f"kernel '{old.kernel}' ran on no config of this run (removed, renamed, or its `when` holds nowhere?)"


def _kind(result: Result) -> tuple[str, str]:
    return result.backend, kernel_family(result.provenance.kernel_source)


def _holdings(results: Iterable[Result]) -> str:
    backends = sorted({r.backend for r in results})
    ops = sorted({r.op for r in results if r.op})
    if not backends:
        return "no case"
    kinds = sorted({kernel_family(r.provenance.kernel_source) for r in results})
    return f"backend {', '.join(backends)}" + (f"; op {', '.join(ops)}" if ops else "") + \
        (f"; kernels of {', '.join(kinds)}" if kinds != ["matrix"] else "")  # q4gsw's own: said only beside another


def diff_runs(baseline: Sequence[Result], results: Sequence[Result], *, label: str,
              factor: float = DEFAULT_FACTOR, scope: Scope | None = None, accept_removed: bool = False,
              accept_new: bool = False) -> Comparison:
    """Match the cases of two runs. scope: compare only the baseline cases this run covered (a `run` of some
    configs against a whole run's baseline); the others are counted as not compared instead of vanished."""
    old, new = _by_key(baseline, worst=False), _by_key(results, worst=True)
    not_compared = 0
    if scope is not None:
        kept = {k: r for k, r in old.items() if scope.covers(r)}
        not_compared, old = len(old) - len(kept), kept
    deltas = [delta(key, old[key], r, factor) if key in old else CaseDelta(key, "new", None, r, factor)
              for key, r in new.items()]
    deltas += [CaseDelta(key, "vanished", r, None, factor, why=_why_not_now(r, new))
               for key, r in old.items() if key not in new]
    ordered = sorted(deltas, key=lambda d: KINDS.index(d.kind))  # stable: each kind keeps the results' order
    nothing_why = f"the baseline holds {_holdings(baseline)}; these results: {_holdings(results)}"
    kinds = frozenset(_kind(r) for r in baseline if r.status in MEASURED)
    return Comparison(label, tuple(ordered), factor, not_compared, accept_removed, nothing_why, accept_new, kinds)
