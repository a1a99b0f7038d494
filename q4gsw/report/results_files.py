"""Finding and reading results.json files for `report` (its DIRs) and for a `--baseline`: a results folder
(DIR/results.json), a results.json file, or a folder searched recursively (e.g. every CI job's downloaded results;
earlier merged outputs found there are left out, so a job is never counted twice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from q4gsw.report.result import NotResults, Result, ResultsSchemaError, read_results


class ReportError(Exception):
    pass


def find_results(sources: list[Path]) -> list[Path]:
    """The results.json files named by the sources, in order, without duplicates."""
    found: list[Path] = []
    for source in sources:
        if source.is_file():
            candidates = [source]
        elif (source / "results.json").is_file():
            candidates = [source / "results.json"]
        elif source.is_dir():
            # Skip earlier merged outputs so that re-running a merge never counts a job twice.
            candidates = [p for p in sorted(source.rglob("results.json")) if not is_merged(p)]
        else:
            raise ReportError(f"{source}: no such file or folder")
        if not candidates:
            raise ReportError(f"{source}: no results.json in it (pass a results folder written by `q4gsw run`)")
        for path in candidates:
            if path.resolve() not in {p.resolve() for p in found}:
                found.append(path)
    return found


def is_merged(path: Path) -> bool:
    try:
        return "merged_from" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def load_all(paths: list[Path]) -> tuple[list[Result], list[dict[str, Any]]]:
    results: list[Result] = []
    metas: list[dict[str, Any]] = []
    for path in paths:
        try:
            loaded, meta = read_results(path)
        except ResultsSchemaError as exc:
            raise ReportError(f"{path}: {exc.problem} — rerun it with this q4gsw, or report it with the q4gsw that "
                              "wrote it") from None
        except NotResults as exc:
            raise ReportError(f"{path}: {exc} — pass a results folder or results.json written by `q4gsw run`") \
                from None
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ReportError(f"{path}: not a q4gsw results.json ({type(exc).__name__}: {exc})") from exc
        results.extend(loaded)
        metas.append({**meta, "path": str(path)})
    return results, metas
