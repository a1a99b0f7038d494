"""bench --op: any op's kernels, with the op's own shape rules, group size and input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from q4gsw.commands import bench
from q4gsw.ops import op_for

ROOT = Path(__file__).resolve().parents[1]


def test_an_unknown_op_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--matrix", str(ROOT / "matrix.toml"), "--op", "no_such_op", "--shapes", "1x64x64"])
    assert exit_info.value.code == 2
    assert "--op no_such_op: unknown op" in capsys.readouterr().err


def test_a_shape_the_op_rejects_is_a_usage_error_naming_the_fix(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--matrix", str(ROOT / "matrix.toml"), "--op", "embedding_q4gsw", "--shapes", "4x512x256"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "shape 4x512x256 for op embedding_q4gsw" in err and "M >= K" in err


def test_each_op_makes_its_synthetic_config():
    qcs4w = bench.bench_config(bench.Shape(1, 2048, 512), 32, "linear_qcs4w")
    assert qcs4w.group_size == 2048 and op_for(qcs4w).shape_problems(qcs4w) == []  # per channel: one group of K
    embedding = bench.bench_config(bench.Shape(512, 512, 256), 32, "embedding_q4gsw")
    assert embedding.inputs == ("every_row",) and embedding.tolerance.rtol == pytest.approx(2.4e-7)
    linear = bench.bench_config(bench.Shape(1, 8192, 512), 32, "linear_q4gsw")
    assert linear.tolerance.atol == pytest.approx(2e-5)  # grown like sqrt(K / 2048)


@pytest.mark.e2e
def test_bench_times_another_ops_kernels_and_checks_them(tmp_path):
    out = tmp_path / "bench.json"
    code = bench.main(["--matrix", str(ROOT / "matrix.toml"), "--op", "linear_qcs4w", "--backend", "lavapipe",
                       "--shapes", "4x512x256", "--repeats", "2", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert code == 0
    assert {r["kernel"] for r in rows} == {"qcs4w_reference"}
    assert all(r["correct"] and r["time_s"] > 0 for r in rows)
