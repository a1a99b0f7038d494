"""Cases and the one Selection that builds them.

A Case is config x kernel x input x backend x tolerance, with one shell-safe id that is also the
filter, the JUnit name and the results key. A Selection is built once from the matrix and the
command line (in the spirit of nox's Manifest.filter_by_*): it filters, orders and shards the
configs, expands them into cases and records every skip with its reason. run, check, export,
audit, mutants, bench and ci-matrix all use it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from q4gsw.matrix.load import TIERS, Backend, Config, Kernel, Matrix, MatrixError, Tolerance
from q4gsw.matrix.values import AdapterInfo
from q4gsw.ops import expression_names, op_for
from q4gsw.sessions import HEAVY_HINT, Rerun

ROLES = ("subject", "reference", "mutant")
DEFAULT_SUITES = ("llama",)


@dataclass(frozen=True)
class Case:
    config: Config
    kernel: Kernel
    input: str
    backend: Backend
    tolerance: Tolerance
    role: str = "subject"  # subject: under test; reference: known correct; mutant: must be caught
    routed: str = ""  # the variant the runtime's routing picks for this config (kernel sets with routing)
    rerun: Rerun = ()  # options its reproduce line repeats (matrix, fixtures, checkout): sessions.rerun_options

    @property
    def id(self) -> str:
        return f"{self.config.name}/{self.kernel.name}/{self.input}@{self.backend.name}"


@dataclass(frozen=True)
class Skip:
    """A config (or one of its kernels) not run, with the reason; `status` is skip or unsupported."""

    config: Config
    reason: str
    kernel: str = ""
    status: str = "skip"


@dataclass(frozen=True)
class Selection:
    backend: Backend
    configs: tuple[Config, ...]
    cases: tuple[Case, ...]
    skipped: tuple[Skip, ...] = ()
    filters: Mapping[str, Any] = field(default_factory=dict)
    # op -> its kernel set's routing order: the runtime runs the first variant that holds (each op its own route)
    route: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    all_variants: bool = False  # with a route: also check every other variant whose preconditions hold
    rerun: Rerun = ()  # the options every reproduce line of the run repeats (sessions.rerun_options)

    def with_rerun(self, rerun: Rerun) -> Selection:
        """The selection whose reproduce lines (its cases' and its skips') repeat these options."""
        return replace(self, rerun=rerun, cases=tuple(replace(c, rerun=rerun) for c in self.cases))

    def cases_of(self, config: Config) -> tuple[Case, ...]:
        return tuple(c for c in self.cases if c.config.name == config.name)

    def is_empty(self) -> bool:
        return not self.configs

    def routed(self, info: Any) -> Selection:
        """Each config's routed variant on this adapter (recorded on every case); unless all_variants, only it runs.

        The route is evaluated with the adapter's real features and limits, as the runtime does."""
        if not self.route:
            return self
        from q4gsw.matrix.expressions import KernelUnsupported, resolve_kernel

        cases: list[Case] = []
        skipped = list(self.skipped)
        for config in self.configs:
            route = self.route.get(config.op, ())
            order = {name: i for i, name in enumerate(route)}
            # Only the route's variants can be what the runtime dispatches; the others run with --all-variants.
            mine = sorted(self.cases_of(config), key=lambda c: order.get(c.kernel.name, len(order)))
            runnable, why_not = [], {}
            for case in mine:
                try:
                    resolve_kernel(case.kernel, expression_names(config), info)
                except KernelUnsupported as exc:
                    why_not.setdefault(case.kernel.name, str(exc))
                    continue
                runnable.append(case.kernel.name)
            routed = next((name for name in runnable if name in order), "")
            if not routed:
                # Each variant's own reason (a missing feature, a limit, its `when`): what keeps the config from
                # running.
                reasons = "; ".join(why_not[name] for name in route if name in why_not)
                skipped.append(Skip(config, f"no variant of the route ({', '.join(route)}) holds for "
                                            f"{op_for(config).shape_text(config.dims)} on {info.name}"
                                            f"{': ' + reasons if reasons else ''}", status="unsupported"))
                continue
            keep = [c for c in mine if c.kernel.name in runnable and (self.all_variants or c.kernel.name == routed)]
            cases += [replace(c, routed=routed) for c in keep]
            others = [n for n in dict.fromkeys(runnable) if n != routed]
            if others and not self.all_variants:
                skipped.append(Skip(config, f"routed to {routed}; not checked (add --all-variants): "
                                            f"{', '.join(others)}", kernel="other-variants"))
            unable = [n for n in dict.fromkeys(c.kernel.name for c in mine) if n not in runnable]
            if unable and self.all_variants:
                skipped.append(Skip(config, f"preconditions do not hold on {info.name} (features, limits or "
                                            f"`when`): {', '.join(unable)}", kernel="other-variants"))
        return replace(self, cases=tuple(cases), skipped=tuple(skipped))

    def filter_by_max_gflop(self, max_gflop: float | None) -> Selection:
        if max_gflop is None:
            return self
        keep = tuple(c for c in self.configs if op_for(c).flops(c) <= max_gflop * 1e9)
        dropped = tuple(Skip(c, f"{op_for(c).flops(c) / 1e9:.1f} GFLOP is over --max-gflop {max_gflop:g}")
                        for c in self.configs if c not in keep)
        return replace(self, configs=keep, cases=tuple(c for c in self.cases if c.config in keep),
                       skipped=self.skipped + dropped)

    def filter_by_op(self, ops: set[str], reason: str) -> Selection:
        """Only configs of these ops; the others are skipped with `reason` (a checkout without an op's kernels)."""
        keep = tuple(c for c in self.configs if c.op in ops)
        dropped = tuple(Skip(c, reason.format(op=c.op)) for c in self.configs if c not in keep)
        # A dropped config's earlier skips ("no kernel applies": its op's kernels were never read) give way to why.
        earlier = tuple(s for s in self.skipped if s.config in keep or s.config not in self.configs)
        return replace(self, configs=keep, cases=tuple(c for c in self.cases if c.config in keep),
                       skipped=earlier + dropped)

    def filter_by_shard(self, index: int, count: int) -> Selection:
        from q4gsw.commands.ci import select_shard

        keep = select_shard(self.configs, index, count)
        # Other-tier skips are reported by shard 1 only, so merged shard reports list each once.
        skipped = tuple(s for s in self.skipped if s.config in keep or (index == 1 and s.config not in self.configs))
        return replace(self, configs=keep, cases=tuple(c for c in self.cases if c.config in keep), skipped=skipped)


def _check_names(matrix: Matrix, option: str, given: Sequence[str], known: Sequence[str]) -> None:
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise MatrixError("command line", option, option, f"'{name}' names nothing in {matrix.path}",
                              f"{hint}choose from {', '.join(sorted(set(known)))}")


def selects_nothing(matrix: Matrix, command: str, names: Sequence[str], ops: Sequence[str]) -> MatrixError:
    """The usage error of an empty selection, naming the options that select nothing together (--suite and --tier
    have defaults, so they always take part without --config), and the --op that rules out a --config's op."""
    options = ("--config",) if names else ("--suite", "--tier")
    options = (*options, "--op") if ops else options
    others = [f"config '{c.name}' is of op {c.op}" for c in matrix.configs if c.name in names and c.op not in ops]
    problem = "selects no config of the matrix" + (f" ({'; '.join(others)})" if ops and others else "")
    return MatrixError("command line", command, "/".join(options), problem,
                       "see `python -m q4gsw list` for the configs, suites, tiers and ops")


def select_configs(matrix: Matrix, *, tiers: Sequence[str] | None = None, suites: Sequence[str] | None = None,
                   names: Sequence[str] = (), ops: Sequence[str] = ()) -> tuple[tuple[Config, ...], tuple[Skip, ...]]:
    """(configs to run, configs left out with the reason). Every name given is checked against the matrix.
    `ops` keeps only those ops' configs; with ops and no suites, every suite of those ops is selected."""
    _check_names(matrix, "--suite", suites or (), [c.suite for c in matrix.configs])
    _check_names(matrix, "--tier", tiers or (), TIERS)
    _check_names(matrix, "--config", names, [c.name for c in matrix.configs])
    _check_names(matrix, "--op", ops, [c.op for c in matrix.configs])
    if ops:
        matrix = replace(matrix, configs=tuple(c for c in matrix.configs if c.op in ops))
        suites = suites or tuple(dict.fromkeys(c.suite for c in matrix.configs))
    if names:
        return tuple(matrix.config(n) for n in dict.fromkeys(names) if n in {c.name for c in matrix.configs}), ()
    suites = tuple(suites) if suites else DEFAULT_SUITES
    tiers = tuple(tiers) if tiers else ("required",)
    selected = matrix.select(tiers=tiers, suites=suites)
    skipped = []
    for config in matrix.select(suites=suites):
        if config.tier not in tiers:
            hint = HEAVY_HINT if config.tier == "heavy" else f"{config.tier}: run with --tier {config.tier}"
            skipped.append(Skip(config, hint))
    return selected, tuple(skipped)


def build_cases(matrix: Matrix, backend: Backend, configs: Sequence[Config], kernels: Sequence[Kernel],
                *, roles: Mapping[str, str] | None = None, use_kernel_tolerance: bool = True,
                applies: bool = True) -> tuple[tuple[Case, ...], tuple[Skip, ...]]:
    """Every (config, kernel, input) whose kernel may run on the backend and whose `when` holds.

    A config no kernel applies to is recorded as unsupported (the engine fails it if it is required).
    `applies=False` keeps every kernel (a `check --kernel` is the user's explicit choice).
    """
    from q4gsw.matrix.expressions import ExpressionError, kernel_applies

    roles = roles or {}
    cases: list[Case] = []
    skipped: list[Skip] = []
    for config in configs:
        try:
            chosen = [k for k in kernels if not applies or kernel_applies(k, config, backend)]
        except ExpressionError as exc:  # known before running: a usage error, like any other in matrix.toml
            raise MatrixError(matrix.path, f"[kernel.{exc.kernel}] with config '{config.name}'", exc.key, str(exc),
                              "make the expression valid for every shape it is evaluated on") from None
        if not chosen:
            skipped.append(Skip(config, f"no kernel applies to {op_for(config).shape_text(config.dims)} "
                                        f"on backend '{backend.name}'", status="unsupported"))
        for kernel in chosen:
            role = roles.get(kernel.name, "subject")
            for input_name in config.inputs:
                tolerance = matrix.tolerance_for(config, backend, kernel if use_kernel_tolerance and role != "mutant"
                                                 else None)
                cases.append(Case(config=config, kernel=kernel, input=input_name, backend=backend,
                                  tolerance=tolerance, role=role))
    return tuple(cases), tuple(skipped)


def build_selection(matrix: Matrix, backend_name: str, *, tiers: Sequence[str] | None = None,
                    suites: Sequence[str] | None = None, names: Sequence[str] = (),
                    kernels: Sequence[Kernel] | None = None, roles: Mapping[str, str] | None = None,
                    shard: tuple[int, int] | None = None, max_gflop: float | None = None,
                    applies: bool = True, route: Mapping[str, tuple[str, ...]] | None = None,
                    all_variants: bool = False, ops: Sequence[str] = ()) -> Selection:
    backend = matrix.backend(backend_name)
    configs, skipped = select_configs(matrix, tiers=tiers, suites=suites, names=names, ops=ops)
    kernel_list = tuple(matrix.kernels if kernels is None else kernels)
    cases, unsupported = build_cases(matrix, backend, configs, kernel_list, roles=roles, applies=applies)
    selection = Selection(backend=backend, configs=configs, cases=cases, skipped=skipped + unsupported,
                          filters=MappingProxyType({"tiers": tiers, "suites": suites, "names": tuple(names),
                                                            "ops": tuple(ops)}),
                          route=MappingProxyType(dict(route or {})), all_variants=all_variants)
    selection = selection.filter_by_max_gflop(max_gflop)
    if shard is not None:
        selection = selection.filter_by_shard(*shard)
    return selection


# ------------------------------------------------------------------------------------------------
# Cases as JSON, for the child process (the frozen types hold MappingProxyType, which pickle refuses)
# ------------------------------------------------------------------------------------------------


def to_plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _tolerance(data: Mapping[str, Any] | None) -> Tolerance | None:
    return None if data is None else Tolerance(**data)


def config_from_plain(data: Mapping[str, Any]) -> Config:
    return Config(**{**data, "inputs": tuple(data["inputs"]), "tolerance": _tolerance(data["tolerance"]),
                     "upstream_tolerance": _tolerance(data.get("upstream_tolerance"))})


def kernel_from_plain(data: Mapping[str, Any]) -> Kernel:
    return Kernel(**{**data, "dispatch": tuple(data["dispatch"]), "overrides": MappingProxyType(data["overrides"]),
                     "requires_features": tuple(data["requires_features"]),
                     "requires_limits": MappingProxyType(data["requires_limits"]), "notes": tuple(data["notes"]),
                     "tolerance": _tolerance(data["tolerance"]),
                     "before": kernel_from_plain(data["before"]) if data.get("before") else None})


def backend_from_plain(data: Mapping[str, Any]) -> Backend:
    overrides = {k: Tolerance(**v) for k, v in data["tolerance_overrides"].items()}
    return Backend(**{**data, "tolerance_overrides": MappingProxyType(overrides),
                      "dawn_toggles": tuple(data.get("dawn_toggles", ()))})


def adapter_from_plain(data: Mapping[str, Any]) -> AdapterInfo:
    return AdapterInfo(**{**data, "features": tuple(data["features"])})


def case_from_plain(data: Mapping[str, Any]) -> Case:
    return Case(config=config_from_plain(data["config"]), kernel=kernel_from_plain(data["kernel"]),
                input=data["input"], backend=backend_from_plain(data["backend"]),
                tolerance=Tolerance(**data["tolerance"]), role=data["role"], routed=data["routed"],
                rerun=tuple((str(o), str(v)) for o, v in data.get("rerun", ())))
