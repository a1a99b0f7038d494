"""The bench drift gate (`bench --baseline OLD.json [--compare NEW.json] --fail-on-drift`; issue 29): a wrong kernel is
never 'same', a kernel timed in the baseline and not now fails it, a comparison of nothing fails it, and a corrupt or
another op's bench JSON is refused before any work (one line, exit 2). Offline: bench JSONs written here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from test_bench_drift import bench_file, row

from q4gsw.commands import bench


def compare(tmp_path: Path, old_rows: list[dict[str, Any]], new_rows: list[dict[str, Any]], *extra: str,
            old_top: dict[str, Any] | None = None) -> int:
    old = bench_file(tmp_path / "old.json", old_rows, **(old_top or {}))
    new = bench_file(tmp_path / "new.json", new_rows)
    return bench.main(["--compare", str(new), "--baseline", str(old), *extra])


def test_a_wrong_kernel_is_never_the_same_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Same time, but the kernel is wrong now: it was compared as 'same', exit 0."""
    wrong = row(correct=False, message="12/4096 elements out of tolerance")
    assert compare(tmp_path, [row(), row("cpu_tiled")], [wrong, row("cpu_tiled")]) == 1  # even without the flag
    captured = capsys.readouterr()
    assert "WRONG 1x2048x2048 gs=32 cpu_gemv: 12/4096 elements out of tolerance" in captured.err
    assert "| wrong | 1x2048x2048 gs=32 | cpu_gemv |" in captured.out
    assert "1 wrong, 0 slower" in captured.out


def test_a_baseline_row_that_was_wrong_is_not_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = [row(correct=False, message="wrong then"), row("cpu_tiled")]
    assert compare(tmp_path, old, [row(samples=(0.009, 0.0091)), row("cpu_tiled")], "--fail-on-drift") == 0
    assert "1 row of the baseline recorded as wrong (correct: false) is not compared" in capsys.readouterr().err


def test_a_kernel_timed_before_and_not_now_fails_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = row(samples=(), correct=None, message="needs shader-f16")
    assert compare(tmp_path, [row(), row("cpu_tiled")], [gone, row("cpu_tiled")], "--fail-on-drift") == 1
    assert "UNMEASURED 1x2048x2048 gs=32 cpu_gemv: timed in the baseline (2.000 ms), not now: needs " \
           "shader-f16" in capsys.readouterr().err
    assert compare(tmp_path, [row(), row("cpu_tiled")], [gone, row("cpu_tiled")]) == 0  # reported only


def test_a_kernel_missing_from_a_shape_this_bench_timed_fails_the_gate(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    old = [row(), row("deleted"), row("cpu_gemv", shape="64x512x256")]
    assert compare(tmp_path, old, [row()], "--fail-on-drift") == 1
    err = capsys.readouterr().err
    assert "REMOVED 1x2048x2048 gs=32 deleted: timed in the baseline, not in this bench" in err
    assert "64x512x256" not in err  # a shape this bench did not time is outside it
    assert compare(tmp_path, old, [row()], "--fail-on-drift", "--accept-removed") == 0


@pytest.mark.parametrize("old_rows, says", [
    ([], "the baseline has no rows"),
    ([row(shape="8x64x64")], "the baseline times 1 kernel on 8x64x64 gs=32; this bench 1 kernel on "
                             "1x2048x2048 gs=32"),
], ids=["no-rows", "other-shapes"])
def test_nothing_compared_fails_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         old_rows: list[dict[str, Any]], says: str) -> None:
    assert compare(tmp_path, old_rows, [row()], "--fail-on-drift", "--accept-removed") == 1
    err = capsys.readouterr().err
    assert f"NOTHING COMPARED: 0 kernels compared with {tmp_path / 'old.json'}: {says}" in err
    assert compare(tmp_path, old_rows, [row()]) == 0


def test_a_baseline_of_another_op_is_refused_before_any_work(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    old = bench_file(tmp_path / "old.json", [row()], op="embedding_q4gsw")
    out = tmp_path / "out.json"
    assert bench.main(["--baseline", str(old), "--json", str(out), "--shapes", "1x64x16"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (f"error: --baseline {old}: times op embedding_q4gsw, this bench op linear_q4gsw: compare bench "
                    "JSONs of one op (bench --op embedding_q4gsw, or a baseline bench of --op linear_q4gsw)")
    assert not out.exists()
    new = bench_file(tmp_path / "new.json", [row()], op="linear_q4gsw")
    assert bench.main(["--compare", str(new), "--baseline", str(old)]) == 2
    assert "times op embedding_q4gsw, --compare " in capsys.readouterr().err


CORRUPT = [  # (id, the first row's change, what the one line says)
    ("time-zero", {"time_s": 0.0}, "time_s is 0.0: a time is > 0"),
    ("time-negative", {"time_s": -0.002}, "time_s is -0.002: a time is > 0"),
    ("time-nan", {"time_s": math.nan}, "time_s is nan: a time is > 0"),
    ("spread-negative", {"spread_s": -0.001}, "spread_s is -0.001"),
    ("spread-nan", {"spread_s": math.nan}, "spread_s is nan"),
    ("spread-absurd", {"spread_s": 1e9}, "spread_s 1000000000.0 is not what its samples_s say (slowest - best"),
    ("best-not-the-best", {"time_s": 0.0001}, "time_s 0.0001 is not the best of its samples_s (0.002)"),
    ("spread-without-samples", {"samples_s": []}, "has spread_s or median_s but no samples_s"),
    ("sample-text", {"samples_s": ["0.002", 0.0021]}, "samples_s[0] is a str"),
    ("group-size-fraction", {"group_size": 32.5}, "group_size is 32.5, not a whole number"),
    ("group-size-text", {"group_size": "32"}, "group_size is '32', not a whole number"),
    ("group-size-bool", {"group_size": True}, "group_size is True, not a whole number"),
]


@pytest.mark.parametrize("change, says", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_a_corrupt_bench_baseline_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         change: dict[str, Any], says: str) -> None:
    old = bench_file(tmp_path / "old.json", [{**row(), **change}, row("cpu_tiled")])
    new = bench_file(tmp_path / "new.json", [row(), row("cpu_tiled")])
    assert bench.main(["--compare", str(new), "--baseline", str(old), "--fail-on-drift"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: --baseline {old}: row 0 (1x2048x2048 cpu_gemv): "), line
    assert says in line and "rerun the baseline bench" in line


def test_a_corrupt_top_level_group_size_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{k: v for k, v in row().items() if k != "group_size"}]
    old = bench_file(tmp_path / "old.json", rows, group_size="thirty-two")
    new = bench_file(tmp_path / "new.json", [row()])
    assert bench.main(["--compare", str(new), "--baseline", str(old)]) == 2
    assert "group_size is 'thirty-two', not a whole number" in capsys.readouterr().err
