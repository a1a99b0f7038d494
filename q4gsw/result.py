"""The Result value type shared by the runner, the reports and the CI tooling."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("pass", "fail", "skip", "unsupported")
RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Result:
    config: str
    backend: str
    status: str  # one of STATUSES
    message: str
    tier: str = ""
    suite: str = ""
    kernel: str = ""
    input: str = ""
    shape: dict[str, int] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    fixture: str = ""
    reproduce: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        parts = [self.config, self.kernel, self.input]
        return "/".join(p for p in parts if p) + f"@{self.backend}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Result:
        known = {f for f in Result.__dataclass_fields__}
        return Result(**{k: v for k, v in data.items() if k in known})


def write_results(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"schema_version": RESULT_SCHEMA_VERSION, **meta, "results": [r.as_dict() for r in results]}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    tmp.replace(path)


def read_results(path: Path) -> tuple[list[Result], dict[str, Any]]:
    payload = json.loads(path.read_text())
    results = [Result.from_dict(r) for r in payload.pop("results", [])]
    return results, payload


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
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)
