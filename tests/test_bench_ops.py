"""bench --op: any op's kernels, with the op's own shape rules, group size and input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from q4gsw.commands import bench
from q4gsw.ops import op_for

ROOT = Path(__file__).resolve().parents[1]


def usage_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """bench's one error line for a usage mistake (exit 2, said before any work)."""
    assert bench.main(["--matrix", str(ROOT / "matrix.toml"), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: command line: bench: "), lines
    return lines[0]


def test_an_unknown_op_is_a_usage_error(capsys):
    line = usage_line(["--op", "no_such_op", "--shapes", "1x64x64"], capsys)
    assert "key '--op': unknown op 'no_such_op' — choose from " in line


def test_a_shape_the_op_rejects_is_a_usage_error_naming_the_fix(capsys):
    line = usage_line(["--op", "embedding_q4gsw", "--shapes", "4x512x256"], capsys)
    assert "key '--shapes': shape 4x512x256 for op embedding_q4gsw" in line and "M >= K" in line


def test_a_rule_of_benchs_input_is_fixed_with_the_shape_not_an_option_bench_lacks(capsys):
    """Issue 29: on bench's default (linear) shapes, embedding's every_row rule said "or use the edges input",
    which bench has no option for; the fix is the shape, and the defaults are said to be another op's."""
    line = usage_line(["--op", "embedding_q4gsw"], capsys)
    assert "shape 1x2048x2048 for op embedding_q4gsw: input every_row gathers all K=2048 rows only with M >= K" in line
    assert "edges" not in line
    assert line.endswith("— bench times the op's 'every_row' input: pass --shapes for which this holds (bench's "
                         "default shapes are linear_q4gsw's: give op embedding_q4gsw its own with --shapes)")
    line = usage_line(["--op", "embedding_q4gsw", "--shapes", "4096x2048x48"], capsys)
    assert line.endswith("use a multiple of 32")  # a rule of the shape keeps the op's own fix


@pytest.mark.parametrize("argv, says", [
    (["--repeats", "0"], "key '--repeats': 0 is not 1 or more"),  # wrote rows with no samples, exit 0
    (["--group-size", "0"], "key '--group-size': 0 is not 1 or more"),  # ZeroDivisionError traceback
    (["--group-size", "-32"], "key '--group-size': -32 is not 1 or more"),  # numpy ValueError traceback
    (["--warmup-s", "nan"], "key '--warmup-s': nan is not a finite number of seconds >= 0"),
    (["--warmup-s", "-1"], "key '--warmup-s': -1 is not a finite number of seconds >= 0"),
    (["--peak-gbs", "-1"], "key '--peak-gbs': -1 is not a finite number > 0"),
    (["--peak-gflops", "inf"], "key '--peak-gflops': inf is not a finite number > 0"),
], ids=["repeats-0", "group-size-0", "group-size-negative", "warmup-nan", "warmup-negative", "peak-gbs-negative",
        "peak-gflops-inf"])
def test_numbers_out_of_range_are_refused_before_any_work(argv, says, capsys, tmp_path):
    """Hostile pass (issue 29): each was a traceback or a bench JSON the drift gate later refuses."""
    line = usage_line([*argv, "--shapes", "1x64x64", "--json", str(tmp_path / "bench.json")], capsys)
    assert says in line and not (tmp_path / "bench.json").exists()


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
