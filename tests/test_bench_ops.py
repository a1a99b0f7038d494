"""bench --op: any op's kernels, with shapes in the op's own dims (or a linear's MxKxN), the op's shape rules, the
group size it really runs, and its input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from q4gsw.commands import bench
from q4gsw.commands.bench_shapes import bench_config, parse_shape
from q4gsw.ops import op_for

ROOT = Path(__file__).resolve().parents[1]


def _usage_error(capsys, *args: str) -> str:
    """bench's one error line for a usage mistake (exit 2, said before any work)."""
    assert bench.main(["--matrix", str(ROOT / "matrix.toml"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: command line: bench: "), lines
    return lines[0]


def test_an_unknown_op_is_a_usage_error(capsys):
    line = _usage_error(capsys, "--op", "no_such_op", "--shapes", "1x64x64")
    assert "key '--op': unknown op 'no_such_op' — choose from " in line


def test_a_shape_the_op_rejects_is_a_usage_error_naming_the_fix(capsys):
    line = _usage_error(capsys, "--op", "embedding_q4gsw", "--shape", "tokens=4,vocab=512,dim=48")
    assert "key '--shape': shape tokens=4,vocab=512,dim=48 for op embedding_q4gsw: embedding dim=48" in line
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
    line = _usage_error(capsys, *argv, "--shapes", "1x64x64", "--json", str(tmp_path / "bench.json"))
    assert says in line and not (tmp_path / "bench.json").exists()


@pytest.mark.parametrize("op, shape, says", [
    # the shorthand skipped each dim's minimum: 0x2048x2048 ran and wrote a JSON of nothing; 1x0x32 ran, its check
    # a ZeroDivisionError
    ("linear_q4gsw", "0x2048x2048", "shape '0x2048x2048': M=0 is not a whole number >= 1"),
    ("linear_qcs4w", "1x0x32", "shape '1x0x32': K=0 is not a whole number >= 1"),
    ("linear_q4gsw", "1x\u00b2x2048", "is not NAME=VALUE"),  # '²'.isdigit(): int('²') was a traceback
    ("embedding_q4gsw", "tokens=1,vocab=\u00b2,dim=2048", "vocab=\u00b2 is not a whole number"),
    ("embedding_q4gsw", "tokens=1,vocab=abc,dim=2048", "vocab=abc is not a whole number"),
    ("embedding_q4gsw", "tokens=1,vocab=,dim=2048", "vocab= is not a whole number"),
    ("embedding_q4gsw", "tokens=1,vocab=-8,dim=2048", "vocab=-8 is not a whole number"),
    ("embedding_q4gsw", "tokens=0,vocab=8,dim=2048", "tokens=0 is not a whole number >= 1"),
    ("embedding_q4gsw", "tokens=1,tokens=1,vocab=8,dim=2048", "tokens is given twice"),
    ("embedding_q4gsw", "tokens=1,vocab=8,dim=2048,M=1", "'M' is not a dim of op embedding_q4gsw"),
    ("embedding_q4gsw", "tokens=1,vocab=8", "lacks dim"),
    ("embedding_q4gsw", "1x2x3", "'1x2x3' is not NAME=VALUE"),
])
def test_a_shape_not_in_the_ops_dims_is_refused_before_any_work(op, shape, says, capsys, tmp_path):
    """Hostile pass (issue 28): each names --shape and lists the op's dims; none runs a kernel or writes a JSON."""
    line = _usage_error(capsys, "--op", op, "--shape", shape, "--json", str(tmp_path / "bench.json"))
    assert "key '--shape': " in line and says in line and f"give op {op}'s dims as NAME=VALUE" in line
    assert not (tmp_path / "bench.json").exists()


def test_a_rule_of_benchs_input_is_fixed_with_the_shape_not_an_option_bench_lacks(capsys, monkeypatch):
    """Issue 29: a rule of the input bench times (say embedding's every_row, were it bench's input) is met by the
    shape: the op's fix would name an input, which bench has no option for."""
    monkeypatch.setattr(type(op_for("embedding_q4gsw")), "synthetic_input", "every_row")
    line = _usage_error(capsys, "--op", "embedding_q4gsw", "--shape", "tokens=1,vocab=2048,dim=2048")
    assert "input every_row gathers all vocab=2048 rows only with tokens >= vocab, tokens=1" in line
    assert line.endswith("— bench times the op's 'every_row' input: pass --shape for which this holds")


@pytest.mark.parametrize("op, shape, says", [
    ("embedding_q4gsw", "4x512x256", "shape '4x512x256': '4x512x256' is not NAME=VALUE"),
    ("embedding_q4gsw", "tokens=1,M=4,dim=64", "'M' is not a dim of op embedding_q4gsw"),
    ("embedding_q4gsw", "tokens=1,dim=64", "shape 'tokens=1,dim=64': lacks vocab"),
    ("embedding_q4gsw", "tokens=1,vocab=x,dim=64", "vocab=x is not a whole number >= 1"),
    ("embedding_q4gsw", "tokens=1,tokens=2,vocab=64,dim=64", "tokens is given twice"),
    ("linear_q4gsw", "1x2048", "'1x2048' is not NAME=VALUE"),
    ("linear_q4gsw", "M=1,K=0,N=64", "K=0 is not a whole number >= 1"),
])
def test_a_bad_shape_is_one_line_listing_the_ops_dims(capsys, op, shape, says):
    line = _usage_error(capsys, "--op", op, "--shape", shape)
    assert "key '--shape': " in line and says in line
    names = {"embedding_q4gsw": "tokens, vocab, dim, group_size (e.g. tokens=1,vocab=2048,dim=2048,group_size=32)",
             "linear_q4gsw": "M, K, N, group_size (e.g. M=1,K=2048,N=2048,group_size=32)"}[op]
    assert line.endswith(f"— give op {op}'s dims as NAME=VALUE: {names}")


def test_a_shape_is_read_in_the_ops_dims_or_a_linears_shorthand():
    embedding, linear, qcs4w = (op_for(name) for name in ("embedding_q4gsw", "linear_q4gsw", "linear_qcs4w"))
    assert parse_shape("vocab=128256,dim=2048,tokens=1", embedding, 32) == {
        "tokens": 1, "vocab": 128256, "dim": 2048, "group_size": 32}  # the op's order; --group-size fills the gap
    assert parse_shape("1x2048x512", linear, 64) == {"M": 1, "K": 2048, "N": 512, "group_size": 64}
    assert parse_shape("M=1, K=2048, N=512, group_size=128", linear, 32)["group_size"] == 128
    # linear_qcs4w runs per channel: whatever group size bench is asked for, the dims record the K it ran
    assert parse_shape("1x2048x512", qcs4w, 32) == parse_shape("1x2048x512", qcs4w, 128) == {
        "M": 1, "K": 2048, "N": 512, "group_size": 2048}


def test_each_op_makes_its_synthetic_config():
    qcs4w = bench_config(parse_shape("1x2048x512", op_for("linear_qcs4w"), 32), "linear_qcs4w")
    assert qcs4w.dims["group_size"] == 2048 and op_for(qcs4w).shape_problems(qcs4w) == []  # per channel: one group of K
    embedding = bench_config({"tokens": 1, "vocab": 128256, "dim": 2048, "group_size": 32}, "embedding_q4gsw")
    assert embedding.inputs == ("edges",) and embedding.tolerance.rtol == pytest.approx(2.4e-7)
    assert op_for(embedding).shape_problems(embedding) == []  # a decode step: one row of the whole vocabulary
    linear = bench_config({"M": 1, "K": 8192, "N": 512, "group_size": 32}, "linear_q4gsw")
    assert linear.tolerance.atol == pytest.approx(2e-5)  # grown like sqrt(K / 2048)
    for op in (op_for(name) for name in ("linear_q4gsw", "linear_qcs4w", "embedding_q4gsw")):
        assert op.bench_shapes and all(op.shape_problems(bench_config(parse_shape(s, op, 32), op.name))
                                       == [] for s in op.bench_shapes), op.name


@pytest.mark.e2e
def test_bench_times_another_ops_kernels_and_checks_them(tmp_path):
    out = tmp_path / "bench.json"
    code = bench.main(["--matrix", str(ROOT / "matrix.toml"), "--op", "linear_qcs4w", "--backend", "lavapipe",
                       "--shapes", "4x512x256", "--repeats", "2", "--json", str(out)])
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert code == 0
    assert {r["kernel"] for r in rows} == {"qcs4w_reference"}
    # the group size it ran (per channel: K), in the rows and the header, not --group-size's 32
    assert data["shapes"] == [{"M": 4, "K": 512, "N": 256, "group_size": 512}] and "group_size" not in data
    assert all(r["dims"] == data["shapes"][0] and r["shape"] == "4x512x256 per-channel" for r in rows)
    assert all(r["correct"] and r["time_s"] > 0 for r in rows)
