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
    gone = replace(LINEAR, op="layer_norm")  # an op this q4gsw does not know
    path = _write_v2(tmp_path / "results.json", [gone])
    with pytest.raises(ResultsSchemaError) as raised:
        read_results(path)
    assert "case 'q_proj/k/ramp@swiftshader' of schema 2 is of op 'layer_norm'" in str(raised.value)
    with pytest.raises(BaselineError) as refused:
        read_baseline(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: case") and "rerun the baseline" in message
    lacking = _write_v2(tmp_path / "lacking.json", [LINEAR], {"q_proj": {"M": 1, "K": 2048}})
    with pytest.raises(ResultsSchemaError, match="its shape lacks N, group_size"):
        read_results(lacking)


def test_a_merge_of_v2_files_is_written_as_v3_and_keeps_every_shape(tmp_path):
    """Hostile pass (issue 28): `report OLD --out X` wrote the input's schema_version 2 over schema 3 shapes, and
    reading X back (a later --baseline X) took them for schema 2 shapes of cases that never ran: every shape erased."""
    results, meta = read_results(_write_v2(tmp_path / "old.json", [LINEAR, EMBEDDING]))
    write_results(tmp_path / "merged.json", results, meta)
    assert json.loads((tmp_path / "merged.json").read_text())["schema_version"] == RESULT_SCHEMA_VERSION
    assert [r.shape for r in read_results(tmp_path / "merged.json")[0]] == [LINEAR.shape, EMBEDDING.shape]
    labelled_2 = tmp_path / "labelled_2.json"  # such a file, written before the fix: its shapes are read as they are
    labelled_2.write_text((tmp_path / "merged.json").read_text().replace('"schema_version": 3', '"schema_version": 2'))
    assert [r.shape for r in read_results(labelled_2)[0]] == [LINEAR.shape, EMBEDDING.shape]


@pytest.mark.parametrize("version, shape, says", [
    (99, None, "schema_version is 99, which this q4gsw cannot read (it reads 1 to 3; a newer q4gsw wrote it)"),
    (0, None, "schema_version is 0, which this q4gsw cannot read (it reads 1 to 3; no q4gsw writes that)"),
    (3, {"M": 1, "K": 2048, "N": 2048, "group_size": 32}, "shape {'M': 1, 'K': 2048, 'N': 2048, 'group_size': 32} "
     "is not schema 3's {dims, text}"),  # read as an empty shape
    (None, {"M": 1, "K": 2048, "N": 2048, "group_size": 32}, "is not schema 3's {dims, text}"),  # no version: 3
    (2, [1, 2048, 2048, 32], "of schema 2 has the shape [1, 2048, 2048, 32], not an object"),  # AttributeError
    (2, "1x2048x2048", "of schema 2 has the shape '1x2048x2048', not an object"),
    (2, {"M": 1, "K": "2048", "N": 2048, "group_size": 32}, "its shape has K = '2048', not whole numbers"),  # "lacks K"
    (2, {"M": 1, "K": 2048, "N": 2048, "group_size": True}, "its shape has group_size = True, not whole"),  # read as 1
])
def test_a_results_file_this_q4gsw_cannot_read_is_refused_in_one_line(tmp_path, version, shape, says):
    """Hostile pass (issue 28): each was read (a newer schema as 3, a shape silently dropped or taken as True) or
    broke with an AttributeError."""
    case = {**LINEAR.as_dict(), **({"shape": shape} if shape is not None else {})}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**({"schema_version": version} if version is not None else {}), "results": [case]}))
    with pytest.raises(ResultsSchemaError) as raised:
        read_results(path)
    assert says in str(raised.value)
    with pytest.raises(BaselineError) as refused:
        read_baseline(path)
    assert "\n" not in str(refused.value) and says in str(refused.value)


def test_a_schema_1_case_without_an_op_is_read_as_linear_q4gsw(tmp_path):
    """Hostile pass (issue 28, a surviving mutant): schema 1 recorded no op; every case then was linear_q4gsw."""
    case = {k: v for k, v in LINEAR.as_dict().items() if k != "op"}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": 1, "results": [{**case, "shape": V2_SHAPES["q_proj"]}]}))
    assert read_results(path)[0][0].shape == LINEAR.shape
