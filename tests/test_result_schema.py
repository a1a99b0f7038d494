"""results.json schema 3 records a case's shape as its op's dims; a schema 2 file (M, K, N, group_size for every op,
an embedding's as M indices into a K x N table) is converted on reading, so a kept baseline still compares."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import fake_result

from q4gsw.compare import compare as compare_arrays
from q4gsw.drift.baseline import BaselineError, read_baseline
from q4gsw.drift.rule import diff_runs
from q4gsw.report.histogram import error_histogram
from q4gsw.report.result import (
    RESULT_SCHEMA_VERSION,
    Result,
    ResultsSchemaError,
    Shape,
    Tolerance,
    read_results,
    write_results,
)


def _measured(config: str) -> Result:
    """A passing case as a run records it: errors from the real compare() and histogram of a small error."""
    golden = np.random.default_rng(7).standard_normal((4, 64))
    y = golden + np.random.default_rng(8).standard_normal((4, 64)) * 1e-7
    judged = compare_arrays(y, golden, TOL)
    return replace(fake_result(config, "pass"), tolerance=TOL,
                   errors=replace(judged.errors, histogram=error_histogram(y, golden)))


TOL = Tolerance(atol=1e-5, rtol=1e-4, justification="test", source="config")
LINEAR = replace(_measured("q_proj"), op="linear_q4gsw",
                 shape=Shape({"M": 1, "K": 2048, "N": 2048, "group_size": 32}, "1x2048x2048 gs=32"))
EMBEDDING = replace(_measured("emb_llama_gs32"), op="embedding_q4gsw",
                    shape=Shape({"tokens": 4096, "vocab": 4096, "dim": 2048, "group_size": 32},
                                "tokens=4096 vocab=4096 dim=2048 gs=32"))
V2_SHAPES = {"q_proj": {"M": 1, "K": 2048, "N": 2048, "group_size": 32},
             "emb_llama_gs32": {"M": 4096, "K": 4096, "N": 2048, "group_size": 32}}  # as schema 2 wrote them


def _write_v2(path: Path, results: list, shapes: dict | None = None) -> Path:
    """A results.json as q4gsw wrote it before schema 3: each shape M, K, N, group_size."""
    shapes = shapes or V2_SHAPES
    cases = [{**r.as_dict(), "shape": shapes[r.config]} for r in results]
    path.write_text(json.dumps({"schema_version": 2, "command": "run", "results": cases}))
    return path


def test_a_v3_file_records_the_dims_and_shape_text(tmp_path):
    write_results(tmp_path / "results.json", [LINEAR, EMBEDDING], {})
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["schema_version"] == RESULT_SCHEMA_VERSION == 3
    assert payload["results"][1]["shape"] == {"dims": {"tokens": 4096, "vocab": 4096, "dim": 2048, "group_size": 32},
                                              "text": "tokens=4096 vocab=4096 dim=2048 gs=32"}
    back, _ = read_results(tmp_path / "results.json")
    assert [r.shape for r in back] == [LINEAR.shape, EMBEDDING.shape]


def test_a_v2_file_is_converted_into_each_ops_dims(tmp_path):
    back, meta = read_results(_write_v2(tmp_path / "results.json", [LINEAR, EMBEDDING]))
    assert meta["schema_version"] == 2
    assert [r.shape for r in back] == [LINEAR.shape, EMBEDDING.shape]


@pytest.mark.parametrize("case", [LINEAR, EMBEDDING], ids=["linear", "embedding"])
def test_a_v2_baseline_compares_with_a_v3_run(tmp_path, case):
    (tmp_path / "old").mkdir()
    _write_v2(tmp_path / "old" / "results.json", [case])
    write_results(tmp_path / "new" / "results.json", [case], {})
    baseline = read_baseline(tmp_path / "old")
    assert baseline.results[0].shape == case.shape
    new, _ = read_results(tmp_path / "new" / "results.json")
    comparison = diff_runs(baseline.results, new, label="old")
    assert [d.kind for d in comparison.deltas] == ["same"]


def test_a_v2_case_that_cannot_be_converted_is_refused_in_one_line(tmp_path):
    gone = replace(LINEAR, op="rms_norm")  # an op this q4gsw does not know
    path = _write_v2(tmp_path / "results.json", [gone])
    with pytest.raises(ResultsSchemaError) as raised:
        read_results(path)
    assert "case 'q_proj/k/ramp@swiftshader' of schema 2 is of op 'rms_norm'" in str(raised.value)
    with pytest.raises(BaselineError) as refused:
        read_baseline(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: case") and "rerun the baseline" in message
    lacking = _write_v2(tmp_path / "lacking.json", [LINEAR], {"q_proj": {"M": 1, "K": 2048}})
    with pytest.raises(ResultsSchemaError, match="its shape lacks N, group_size"):
        read_results(lacking)
