"""`bench --scoreboard` (q4gsw.report.scoreboard, through q4gsw.commands.bench.main): bench JSONs side by side;
a file it cannot
read is one line naming it and what is wrong, exit 2, never a traceback; files that are not comparable (different
shapes or group sizes) give one warning line each (issue 22)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import fake_result

from q4gsw.commands import bench
from q4gsw.report.result import write_results


def row(shape: str = "1x2048x2048", kernel: str = "gemv", time_s: float | None = 0.002, **extra: Any) -> dict:
    return {"shape": shape, "kernel": kernel, "group_size": 32, "time_s": time_s, "timing": "gpu",
            "gflops": 4.2 if time_s else None, "gbytes_s": 2.1 if time_s else None, "correct": True, "message": "",
            **extra}


def bench_json(path: Path, rows: list[dict], **top: Any) -> Path:
    path.write_text(json.dumps({"backend": "native", "webgpu": "dawn", "group_size": 32, "rows": rows, **top}))
    return path


def test_scoreboard_of_two_comparable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = bench_json(tmp_path / "a.json", [row(), row(kernel="tiled", time_s=0.001)])
    b = bench_json(tmp_path / "b.json", [row(time_s=0.003)], webgpu="wgpu-native")
    assert bench.main(["--scoreboard", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].startswith("| shape | kernel |") and len(lines) == 5
    assert [line.split("|")[2].strip() for line in lines[2:]] == ["tiled", "gemv", "gemv"]  # fastest first


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope.json"


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "bench").mkdir()
    return tmp_path / "bench"


def _text(content: str | bytes):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "bench.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path
    return make


def _results_json(tmp_path: Path) -> Path:
    write_results(tmp_path / "results.json", [fake_result("q_proj", "pass")], {"backend": "swiftshader"})
    return tmp_path / "results.json"


def _without(field: str):
    def make(tmp_path: Path) -> Path:
        broken = row()
        del broken[field]
        return bench_json(tmp_path / "bench.json", [row(), broken])
    return make


HOSTILE = [  # (id, make the file, what the one line says)
    ("missing", _missing, "no such file"),
    ("a-folder", _folder, "is a folder, not a bench JSON"),
    ("not-json", _text("shape,kernel\n1x8x8,gemv\n"), "is not JSON (Expecting value at line 1 column 1)"),
    ("not-utf8", _text(b"\xff\xfe\x00garbage"), "is not JSON (not UTF-8 text)"),
    ("empty", _text(""), "is not JSON"),
    ("a-json-list", _text("[1, 2]"), "holds a JSON list, not a bench JSON object"),
    ("a-results-json", _results_json, "is a q4gsw results.json (from `run` or `report`), not a bench JSON"),
    ("no-rows", _text('{"backend": "native"}'), "has no 'rows' list"),
    ("rows-not-a-list", _text('{"rows": {"shape": "1x8x8"}}'), "has no 'rows' list"),
    ("a-row-not-an-object", _text('{"rows": [3]}'), "row 0 is a JSON int, not an object"),
    ("a-row-without-time", _without("time_s"), "row 1 has no 'time_s' field"),
    ("a-row-without-shape", _without("shape"), "row 1 has no 'shape' field"),
    ("a-row-without-correct", _without("correct"), "row 1 has no 'correct' field"),
    ("a-time-that-is-text", _text(json.dumps({"rows": [row(time_s="fast")]})), "row 0: 'time_s' is a str"),
    ("a-check-that-is-text", _text(json.dumps({"rows": [row(correct="yes")]})), "row 0: 'correct' is a str"),
]


@pytest.mark.parametrize("make, says", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_file_the_scoreboard_cannot_read_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 make: Any, says: str) -> None:
    good = bench_json(tmp_path / "good.json", [row()])
    bad = make(tmp_path)
    assert bench.main(["--scoreboard", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing half-printed
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: --scoreboard {bad}: {says}")
    assert line.endswith(": pass files written by `python -m q4gsw bench --json PATH`")


def test_merging_different_shapes_or_group_sizes_warns_once_each(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a = bench_json(tmp_path / "a.json", [row(), row(shape="1x2048x8192")])
    b = bench_json(tmp_path / "b.json", [row(group_size=128)], group_size=128)
    assert bench.main(["--scoreboard", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert warnings == [
        f"warning: the bench JSONs cover different shapes ({a}: 1x2048x2048 gs=32, 1x2048x8192 gs=32; {b}: "
        "1x2048x2048 gs=128): "
        "a shape only some files have is compared only among those",
        f"warning: the bench JSONs were run with different group sizes ({a}: 32; {b}: 128): their times are not "
        "of the same work"]
    assert len(captured.out.splitlines()) == 5  # the scoreboard is still printed


def test_the_committed_bench_jsons_are_read_as_they_are() -> None:
    """Real bench JSONs (docs/native-h100, several q4gsw versions) pass the checks: they are what the checks
    describe, not a stricter format."""
    from q4gsw.report.scoreboard import read_bench

    found = sorted((Path(__file__).resolve().parent.parent / "docs").rglob("bench*.json"))
    assert found
    for path in found:
        assert read_bench(path)["rows"], path
