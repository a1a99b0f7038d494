"""Reading matrix.toml's tables with an error for each mistake: MatrixError names the file, the config or
table, and the key, and says how to fix it; the CLI turns it into exit code 2 before anything runs."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simpleeval import InvalidExpression

from q4gsw.matrix.expressions import evaluate
from q4gsw.matrix.values import Dim, Tolerance
from q4gsw.ops import op_names, registry

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TOLERANCE_KEYS = ("atol", "rtol", "justification")


class MatrixError(Exception):
    """A problem in matrix.toml that the user must fix; always names file, config/table and key."""

    def __init__(self, path: Path | str, where: str, key: str, problem: str, fix: str) -> None:
        self.path = str(path)
        self.where = where
        self.key = key
        self.problem = problem
        self.fix = fix
        # One line, always: multi-line causes (regex, expression or decoder messages) are joined with ' | '.
        problem = " | ".join(line.strip() for line in str(problem).splitlines() if line.strip())
        self.problem = problem
        message = f"{self.path}: {where}: key '{key}': {problem} — {fix}"
        # Names from the file (quoted TOML keys may hold a newline) are shown escaped.
        super().__init__("".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message))


def suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


class Checker:
    """Typed reads of a TOML table; every failure a MatrixError naming the file, table and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, key: str, problem: str, fix: str) -> MatrixError:
        return MatrixError(self.path, where, key, problem, fix)

    def known_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str, prefix: str = "") -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(where, prefix + key, "unknown key",
                                f"{suggest(key, list(allowed))}allowed keys are {', '.join(allowed)}")

    def table(self, value: Any, where: str, key: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, key, f"expected a table, got {type(value).__name__}",
                            f"write it as [{key}] or {key} = {{ ... }}")
        return value

    def integer(self, value: Any, where: str, key: str, positive: bool = True) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, key, f"expected an integer, got {value!r} ({type(value).__name__})",
                            "write a whole number without quotes")
        if positive and value <= 0:
            raise self.fail(where, key, f"must be positive, got {value}", "use a value >= 1")
        if not positive and value < 0:
            raise self.fail(where, key, f"must not be negative, got {value}", "use a value >= 0")
        return value

    def number(self, value: Any, where: str, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, key, f"expected a number, got {value!r} ({type(value).__name__})",
                            "write a number without quotes, e.g. 1e-5")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise self.fail(where, key, f"must be finite, got {value}", "use a finite non-negative number")
        if number < 0:
            raise self.fail(where, key, f"must not be negative, got {value}", "use a non-negative number")
        return number

    def string(self, value: Any, where: str, key: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(where, key, f"expected a string, got {value!r} ({type(value).__name__})",
                            "put the value in double quotes")
        if choices is not None and value not in choices:
            raise self.fail(where, key, f"unknown value '{value}'",
                            f"{suggest(value, list(choices))}choose one of {', '.join(choices)}")
        return value

    def tolerance(self, value: Any, where: str, source: str) -> Tolerance:
        tol = self.table(value, where, "tolerance")
        self.known_keys(tol, TOLERANCE_KEYS, where, "tolerance.")
        for key in TOLERANCE_KEYS:
            if key not in tol:
                fix = ("add a sentence saying why this bound is right for this shape (see docs/error-model.md)"
                       if key == "justification" else f"add tolerance.{key} = <non-negative number>")
                raise self.fail(where, f"tolerance.{key}", "missing", fix)
        justification = self.string(tol["justification"], where, "tolerance.justification")
        if not justification.strip():
            raise self.fail(where, "tolerance.justification", "is empty",
                            "write why this bound is right for this shape (see docs/error-model.md)")
        return Tolerance(atol=self.number(tol["atol"], where, "tolerance.atol"),
                         rtol=self.number(tol["rtol"], where, "tolerance.rtol"),
                         justification=justification.strip(), source=source)

    def pattern(self, value: Any, where: str, key: str) -> str:
        text = self.string(value, where, key)
        try:
            re.compile(text)
        except re.error as exc:
            raise self.fail(where, key, f"not a valid regular expression: {exc}",
                            "escape special characters or use a plain substring") from exc
        return text

    def config_keys(self, raw: Mapping[str, Any], where: str, op_name: str, dims: tuple[str, ...],
                    common: tuple[str, ...]) -> None:
        """A config's keys: the common ones and its op's dims (another op's dim is a mistake here)."""
        for key in raw:
            if key not in common and key not in dims:
                raise self.fail(where, key, "unknown key", f"{suggest(key, [*dims, *common])}op {op_name} has the "
                                f"dims {', '.join(dims)}; the other keys are {', '.join(common)}")

    def dims(self, merged: Mapping[str, Any], where: str, op_name: str, declared: tuple[Dim, ...]) -> dict[str, int]:
        """A config's dims by its op's names: each present, an integer, at least the dim's minimum."""
        listing = ", ".join(f"{d.name} ({d.meaning})" for d in declared)
        dims = {}
        for dim in declared:
            if dim.name not in merged:
                raise self.fail(where, dim.name, "missing", f"add {dim.name} = <integer>: op {op_name} has the dims "
                                f"{listing}")
            value = merged[dim.name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(where, dim.name, f"expected an integer, got {value!r} ({type(value).__name__})",
                                f"write a whole number without quotes: op {op_name} has the dims {listing}")
            if value < dim.minimum:
                raise self.fail(where, dim.name, f"must be at least {dim.minimum}, got {value}",
                                f"use {dim.name} >= {dim.minimum} ({dim.meaning})")
            dims[dim.name] = value
        return dims

    def op(self, value: Any, where: str) -> str:
        return self.string(value, where, "op", op_names())

    def kernel_file(self, where: str, kernel_file: str, base: Path) -> None:
        """Raise for a kernel file not found next to matrix.toml, or not UTF-8 text (the run's child read it and
        crashed, its traceback in the FAIL message). One found from the working directory is refused too: every
        run reads it relative to matrix.toml's folder, so it would pass here and fail there."""
        path = base / kernel_file
        if path.is_file():
            try:
                path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise self.fail(where, "file", f"'{kernel_file}' cannot be read as UTF-8 text ({type(exc).__name__}: "
                                f"{exc})", "save the WGSL file as UTF-8") from None
            return
        if Path(kernel_file).is_file():
            relative = os.path.relpath(Path(kernel_file).resolve(), base.resolve())
            raise self.fail(where, "file", f"'{kernel_file}' is found from the working directory, not from "
                            f"matrix.toml's folder {base.resolve()}, where every run reads it",
                            f'write file = "{relative}"')
        raise self.fail(where, "file", f"'{kernel_file}' does not exist", "give a .wgsl path relative to matrix.toml")

    def chains(self, where: str, op: str) -> None:
        """A `before` only on an op that defines the first kernel's buffers (a run would otherwise fail on it)."""
        if not registry()[op].chains:
            chaining = [name for name, candidate in registry().items() if candidate.chains]
            raise self.fail(where, "before", f"op '{op}' runs no kernel before its own (ops that chain: "
                            f"{', '.join(chaining) or 'none'})", f"remove the [{where[1:-1]}.before] table")

    def stage(self, raw: Mapping[str, Any], where: str, op: str) -> str:
        """A kernel's `stage`: one of its op's dispatches (Op.stages), required where the op has stages (its buffers
        depend on it) and refused where it has none."""
        stages = registry()[op].stages
        if "stage" not in raw:
            if stages:
                raise self.fail(where, "stage", f"missing: op '{op}' binds each dispatch by its stage",
                                f"add stage = \"...\" (one of {', '.join(stages)})")
            return ""
        value = self.string(raw["stage"], where, "stage")
        if value not in stages:
            raise self.fail(where, "stage", f"op '{op}' has no stage {value!r}",
                            f"{suggest(value, list(stages))}choose from {', '.join(stages)}" if stages
                            else "remove it (only ops with several dispatches name stages)")
        return value

    def name(self, value: str, where: str, key: str) -> str:
        """A name that becomes a file name, a nox session name and a CLI argument."""
        if not SAFE_NAME.fullmatch(value) or ".." in value:
            raise self.fail(where, key, f"{value!r} is not usable as a file, session and argument name",
                            "start with a letter or digit and use only letters, digits, '_', '-' and '.' "
                            "(no '..'), at most 64 characters")
        return value

    def expression(self, text: Any, where: str, key: str, names: Mapping[str, Any]) -> str:
        text = self.string(text, where, key)
        try:
            evaluate(text, names)
        except (InvalidExpression, Exception) as exc:  # any failure (IndexError, OverflowError, ...) is the user's
            raise self.fail(where, key, f"bad expression {text!r}: {exc}",
                            f"use arithmetic over {', '.join(names)} and ceil/min/max") from exc
        return text

    def upstream_tolerance(self, value: Any, where: str) -> Tolerance | None:
        """ExecuTorch's own bound for this row: atol and rtol only (its justification lives upstream)."""
        if value is None:
            return None
        table = self.table(value, where, "upstream_tolerance")
        self.known_keys(table, ("atol", "rtol"), where, "upstream_tolerance.")
        return Tolerance(atol=self.number(table.get("atol"), where, "upstream_tolerance.atol"),
                         rtol=self.number(table.get("rtol"), where, "upstream_tolerance.rtol"),
                         justification="ExecuTorch's test_webgpu_native.cpp (abs OR rel)", source="upstream")


    def drift_factor(self, value: Any, where: str) -> float | None:
        """A config's drift_factor (docs/results.md): how much its error may grow against a baseline run before
        it is reported as drift; None when the config leaves it to --drift-factor."""
        if value is None:
            return None
        factor = self.number(value, where, "drift_factor")
        if factor <= 1:  # a factor of 1 or less would report any wobble, even an improvement, as drift
            raise self.fail(where, "drift_factor", f"must be greater than 1, got {value}",
                            "write e.g. drift_factor = 3.0 (error may triple before it is drift)")
        return factor

    def boolean(self, value: Any, where: str, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, key, f"expected true or false, got {value!r}", f"write {key} = true")
        return value


    def toggles(self, raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
        toggles = raw.get("dawn_toggles", [])
        if not isinstance(toggles, list) or not all(isinstance(t, str) and t for t in toggles):
            raise self.fail(where, "dawn_toggles", "expected a list of Dawn toggle names",
                             'write e.g. dawn_toggles = ["vulkan_enable_f16_on_nvidia"]')
        if toggles and raw.get("webgpu") != "dawn":
            raise self.fail(where, "dawn_toggles", "only a Dawn backend has toggles", 'add webgpu = "dawn"')
        return tuple(toggles)
