"""Results the run records itself (skips, configs that failed before any case was judged) and the order in which
results are reported: the matrix's, whatever ran first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from q4gsw.case import base_result
from q4gsw.cases import Case, Selection, Skip
from q4gsw.matrix.load import Config
from q4gsw.report.result import Result, shape_of
from q4gsw.sessions import reproduce_command


def skip_result(skip: Skip, selection: Selection) -> Result:
    c = skip.config
    return Result(config=c.name, backend=selection.backend.name, status=skip.status, message=skip.reason,
                  case_id=f"{c.name}{'/' + skip.kernel if skip.kernel else ''}@{selection.backend.name}",
                  webgpu=selection.backend.webgpu, tier=c.tier, suite=c.suite, kernel=skip.kernel,
                  shape=shape_of(c), drift_factor=c.drift_factor,
                  reproduce=reproduce_command(c.name, selection.backend.name, c.tier, c.suite,
                                              rerun=selection.rerun))


def config_failure(config: Config, selection: Selection, message: str, cases: tuple[Case, ...], **extra: Any) -> Result:
    """A config that failed before any of its cases could be judged (export, crash, timeout, no adapter)."""
    if cases:
        return base_result(cases[0], "fail", message, **extra)
    return replace(skip_result(Skip(config, message), selection), status="fail", **extra)


def in_matrix_order(results: list[Result], selection: Selection, matrix_order: Sequence[str] = ()) -> list[Result]:
    """Results as the matrix lists their configs and each config its cases, whatever ran or finished first.

    matrix_order: every config name of the matrix in its order (the run's selection holds only the selected
    ones; without it, configs skipped before the run come first). Within a config, the selection's case order;
    rows that are not one of its cases (skips, config failures) keep their place after them."""
    order = list(dict.fromkeys([*matrix_order, *(c.name for c in selection.configs)]))
    config_position = {name: i for i, name in enumerate(order)}
    case_position = {c.id: i for i, c in enumerate(selection.cases)}
    return sorted(results, key=lambda r: (config_position.get(r.config, -1),
                                          case_position.get(r.case_id, len(case_position))))
