"""`bench --baseline OLD.json` (q4gsw.drift.bench): a kernel slower than the baseline beyond both runs' spreads and
the minimum margin is drift; noise inside the spreads is not; old bench JSONs (no spread) are still read; a file of
the wrong kind is one line and exit 2. Offline (bench JSONs written here, `--compare` instead of a bench run), plus
one e2e bench on SwiftShader that records the per-repeat times."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import MATRIX
from helpers import fake_result

from q4gsw.commands import bench
from q4gsw.drift.bench import MIN_SLOWDOWN, diff_bench, judge, repeat_stats
from q4gsw.report.result import write_results


def row(kernel: str = "cpu_gemv", samples: tuple[float, ...] = (0.0020, 0.0021, 0.0022), shape: str = "1x2048x2048",
        **extra: Any) -> dict[str, Any]:
    best = min(samples) if samples else None
    return {"shape": shape, "kernel": kernel, "group_size": 32, "time_s": best, "timing": "gpu",
            "gflops": 8.4 / best / 1e9 if best else None, "gbytes_s": 1.0, "correct": True, "message": "",
            **repeat_stats(samples), **extra}


def bench_file(path: Path, rows: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(json.dumps({"backend": "swiftshader", "webgpu": "wgpu-native", "bench_format": 2,
                                "adapter": {"name": "SwiftShader Device (Subzero)"}, "group_size": 32, "repeats": 3,
                                "rows": rows, **top}))
    return path


def slower(samples: tuple[float, ...], factor: float) -> tuple[float, ...]:
    return tuple(s * factor for s in samples)


BASE = (0.0020, 0.0021, 0.0022)  # best 2.0 ms, spread 0.2 ms


def test_repeat_stats() -> None:
    assert repeat_stats([0.003, 0.001, 0.002]) == {"median_s": 0.002, "spread_s": 0.002,
                                                   "samples_s": [0.003, 0.001, 0.002]}
    assert repeat_stats([]) == {}


@pytest.mark.parametrize("old, new, spreads, expected", [
    (2.0, 4.0, (0.2, 0.2), "slower"),  # 2x: far past both spreads and the margin
    (2.0, 2.3, (0.2, 0.2), "same"),  # +0.3 is inside the spreads 0.2 + 0.2
    (2.0, 2.5, (0.2, 0.2), "slower"),
    (2.0, 2.1, (0.0, 0.0), "same"),  # +5 %: under the 10 % margin even without noise
    (2.0, 2.3, (0.0, 0.0), "slower"),
    (2.0, 3.0, (0.6, 0.6), "same"),  # +1.0 inside spreads of 1.2: noise
    (4.0, 2.0, (0.2, 0.2), "faster"),
])
def test_the_rule(old: float, new: float, spreads: tuple[float, float], expected: str) -> None:
    assert judge(old, new, *spreads, MIN_SLOWDOWN) == expected


def test_a_second_bench_of_the_same_code_is_no_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = bench_file(tmp_path / "old.json", [row(), row("cpu_tiled", shape="64x512x256")])
    # Another run of the same code: other samples, best within the spreads.
    new = bench_file(tmp_path / "new.json", [row(samples=(0.0021, 0.0020, 0.0023)),
                                             row("cpu_tiled", (0.0021, 0.0020, 0.0022), shape="64x512x256")])
    assert bench.main(["--compare", str(new), "--baseline", str(old), "--fail-on-drift"]) == 0
    out = capsys.readouterr().out
    assert "bench baseline: 0 wrong, 0 slower, 0 faster, 0 new, 0 vanished, 0 without a time (2 kernels compared " \
        f"with {old})" in out


def test_a_kernel_made_slower_is_drift_and_fails_on_request(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    old = bench_file(tmp_path / "old.json", [row(), row("cpu_tiled")])
    new = bench_file(tmp_path / "new.json", [row(samples=slower(BASE, 1.5)), row("cpu_tiled")])
    assert bench.main(["--compare", str(new), "--baseline", str(old)]) == 0  # reported only
    captured = capsys.readouterr()
    assert "| SLOWER | 1x2048x2048 gs=32 | cpu_gemv | 2.000 | 3.000 | 1.50x |" in captured.out
    assert "bench baseline: 0 wrong, 1 slower" in captured.out
    assert "DRIFT 1x2048x2048 gs=32 cpu_gemv: slower, best 2.000 -> 3.000 ms (1.50x)" in captured.err
    assert bench.main(["--compare", str(new), "--baseline", str(old), "--fail-on-drift"]) == 1
    # A larger margin than the slowdown: not reported.
    assert bench.main(["--compare", str(new), "--baseline", str(old), "--fail-on-drift",
                       "--min-slowdown", "0.6"]) == 0


def test_a_slowdown_inside_the_measured_spread_is_noise(tmp_path: Path) -> None:
    noisy = (0.0020, 0.0030, 0.0040)  # spread 2 ms
    old = bench_file(tmp_path / "old.json", [row(samples=noisy)])
    new = bench_file(tmp_path / "new.json", [row(samples=slower(noisy, 1.5))])  # +1 ms < 2 + 3 ms of spreads
    assert bench.main(["--compare", str(new), "--baseline", str(old), "--fail-on-drift"]) == 0


def test_new_vanished_and_unmeasured_kernels(tmp_path: Path) -> None:
    old = {"rows": [row(), row("removed"), row("unmeasured")], "backend": "swiftshader"}
    new = {"rows": [row(), row("added"), row("unmeasured", samples=())], "backend": "swiftshader"}
    comparison = diff_bench(old, new, label="old")
    assert {(d.kernel, d.kind) for d in comparison.deltas} == {("cpu_gemv", "same"), ("added", "new"),
                                                                ("removed", "vanished"), ("unmeasured", "unmeasured")}
    assert comparison.line().startswith("0 wrong, 0 slower, 0 faster, 1 new, 1 vanished, 1 without a time (1 kernel "
                                        "compared")


def test_an_older_bench_json_without_spread_is_read_with_the_margin_alone(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    old_rows = [{k: v for k, v in row().items() if k not in ("median_s", "spread_s", "samples_s")}]
    old = bench_file(tmp_path / "old.json", old_rows, bench_format=None)
    new = bench_file(tmp_path / "new.json", [row(samples=slower(BASE, 1.15))])
    assert bench.main(["--compare", str(new), "--baseline", str(old), "--fail-on-drift"]) == 1
    assert f"note: {old} records no spread over repeats (written by an older q4gsw): only the 10% margin applies" \
        in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "docs").rglob("bench*.json")),
                         ids=lambda p: str(p.relative_to(Path(__file__).resolve().parent.parent / "docs")))
def test_the_committed_bench_jsons_are_readable_baselines(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    """Each bench JSON q4gsw wrote passes the baseline's checks; against itself nothing moved, and it fails exactly
    when it records a wrong kernel (a wrong kernel is never 'same')."""
    wrong = sum(1 for r in json.loads(path.read_text())["rows"] if r["correct"] is False)
    assert bench.main(["--compare", str(path), "--baseline", str(path), "--fail-on-drift"]) == (1 if wrong else 0)
    assert f"bench baseline: {wrong} wrong, 0 slower, 0 faster, 0 new, 0 vanished" in capsys.readouterr().out


def _results_json(tmp_path: Path) -> Path:
    write_results(tmp_path / "results.json", [fake_result("q_proj", "pass")], {"backend": "swiftshader"})
    return tmp_path / "results.json"


@pytest.mark.parametrize("make, says", [
    (lambda p: p / "nope.json", "no such file"),
    (_results_json, "is a q4gsw results.json (from `run` or `report`), not a bench JSON: pass a bench JSON written by "
                    "`python -m q4gsw bench --json PATH` (results.json files: `report --baseline`)"),
    (lambda p: bench_file(p / "b.json", [row(spread_s="wide")]), "row 0: 'spread_s' is a str"),
], ids=["missing", "a-results-json", "a-spread-that-is-text"])
def test_a_bad_bench_baseline_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any,
                                                     says: str) -> None:
    bad = make(tmp_path)
    json_out = tmp_path / "out.json"
    assert bench.main(["--baseline", str(bad), "--json", str(json_out), "--shapes", "1x64x16"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: --baseline {bad}: ") and says in line
    assert not json_out.exists()  # checked before any work


def test_compare_needs_a_baseline(tmp_path: Path) -> None:
    new = bench_file(tmp_path / "new.json", [row()])
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--compare", str(new)])
    assert exit_info.value.code == 2


@pytest.mark.e2e
def test_bench_on_swiftshader_records_repeats_and_compares_with_itself(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--backend", "swiftshader", "--matrix", str(MATRIX), "--shapes", "1x256x64", "--repeats", "4",
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["bench_format"] == 3 and data["shapes"] == [{"M": 1, "K": 256, "N": 64, "group_size": 32}]
    [measured] = [r for r in data["rows"] if r["time_s"]]
    assert len(measured["samples_s"]) == 4 and measured["time_s"] == min(measured["samples_s"])
    assert measured["median_s"] == pytest.approx(statistics.median(measured["samples_s"]))
    assert measured["spread_s"] == pytest.approx(max(measured["samples_s"]) - min(measured["samples_s"]))
    assert measured["warmup_s"] == 0.0 and data["warmup_s"] is None  # a CPU adapter: no warm-up by default
    capsys.readouterr()
    assert bench.main(["--compare", str(out), "--baseline", str(out), "--fail-on-drift"]) == 0


@pytest.mark.e2e
def test_bench_warms_the_adapter_up_for_as_long_as_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--backend", "swiftshader", "--matrix", str(MATRIX), "--shapes", "1x256x64", "--repeats", "2",
                       "--warmup-s", "0.3", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    [measured] = [r for r in data["rows"] if r["time_s"]]
    assert data["warmup_s"] == 0.3 and 0.3 <= measured["warmup_s"] < 30
    assert len(measured["samples_s"]) == 2 and measured["correct"] is True
    # the title reports the warm-up measured, which overshoots the asked 0.3 s by a slow machine's last batch
    assert f"timed after {measured['warmup_s']:.2g} s of load each" in " ".join(capsys.readouterr().out.split())


class _Timed:
    """What Device.run returns, as far as _time_dispatches reads it."""

    def __init__(self, gpu_s: float | None, wall_s: float, samples: tuple[float, ...] = (),
                 warmup_s: float = 0.0) -> None:
        self.gpu_s, self.wall_s, self.gpu_samples, self.warmup_s = gpu_s, wall_s, samples, warmup_s


class _Device:
    def __init__(self, timestamps: bool, samples: tuple[float, ...], is_cpu: bool = False) -> None:
        self.timestamps, self.samples, self.repeats, self.warmups = timestamps, samples, [], []
        self.info = SimpleNamespace(is_cpu=is_cpu)

    def run(self, *args: Any, repeats: int = 1, before: Any = None, warmup_s: float = 0.0, batch: int = 1) -> _Timed:
        self.repeats.append(repeats)
        self.warmups.append(warmup_s)
        return _Timed(min(self.samples) if self.timestamps and self.samples else None, 0.5, self.samples,
                      warmup_s)


@pytest.mark.parametrize("timestamps, how", [(True, "gpu"), (False, "wall")])
def test_repeats_are_timed_one_by_one_and_the_best_counts(timestamps: bool, how: str) -> None:
    from q4gsw.case import GPU_WARMUP_S, _time_dispatches

    case = SimpleNamespace(kernel=SimpleNamespace(name="k"))
    device = _Device(timestamps, (0.003, 0.001, 0.002))
    seconds, timing, samples, warmed = _time_dispatches(device, _Timed(0.004, 0.5), "src", case, {}, (1,), None, 3)
    assert (seconds, timing, samples) == (0.001, how, (0.003, 0.001, 0.002))
    assert device.repeats == [3]  # one run of `repeats` dispatches after the first (pipeline creation)
    assert device.warmups == [GPU_WARMUP_S] and warmed == GPU_WARMUP_S  # a GPU is timed after its warm-up
    # One dispatch: the first's own time, no samples, nothing run again, no warm-up.
    first = _Timed(0.004 if timestamps else None, 0.5)
    assert _time_dispatches(device, first, "src", case, {}, (1,), None, 1) == \
        ((0.004, "gpu", (), None) if timestamps else (0.5, "wall", (), None))
    # Timestamps that read nothing: unmeasured, never a made-up time.
    assert _time_dispatches(_Device(timestamps, ()), first, "src", case, {}, (1,), None, 3)[:3] == \
        (None, "unmeasured", ())


def test_warm_up_defaults_to_gpus_and_obeys_an_explicit_value() -> None:
    from q4gsw.case import GPU_WARMUP_S, _time_dispatches, warmup_for

    assert warmup_for(False, None) == GPU_WARMUP_S
    assert warmup_for(True, None) == 0.0  # SwiftShader, lavapipe: no clock to raise
    assert warmup_for(True, 0.25) == 0.25
    assert warmup_for(False, -1.0) == 0.0
    case = SimpleNamespace(kernel=SimpleNamespace(name="k"))
    cpu = _Device(True, (0.002,), is_cpu=True)
    _time_dispatches(cpu, _Timed(0.004, 0.5), "src", case, {}, (1,), None, 3)
    _time_dispatches(cpu, _Timed(0.004, 0.5), "src", case, {}, (1,), None, 3, warmup_s=0.5)
    assert cpu.warmups == [0.0, 0.5]


def _v3(row_: dict[str, Any], dims: dict[str, int], text: str) -> dict[str, Any]:
    """A bench format 3 row: its dims and the op's shape text instead of MxKxN and a group size."""
    return {**{k: v for k, v in row_.items() if k != "group_size"}, "shape": text, "dims": dims}


def test_a_format_2_baseline_compares_with_a_format_3_bench_by_the_ops_dims(tmp_path: Path) -> None:
    old = {"rows": [row(), row(shape="64x512x256")], "op": "linear_q4gsw", "group_size": 32}  # bench format 2
    new = {"rows": [_v3(row(), {"M": 1, "K": 2048, "N": 2048, "group_size": 32}, "1x2048x2048 gs=32"),
                    _v3(row(), {"M": 64, "K": 512, "N": 256, "group_size": 64}, "64x512x256 gs=64")],
           "op": "linear_q4gsw", "bench_format": 3}
    kinds = {(d.shape, d.kind) for d in diff_bench(old, new, label="old").deltas}
    assert kinds == {("1x2048x2048 gs=32", "same"), ("64x512x256 gs=64", "new"), ("64x512x256 gs=32", "vanished")}


def test_two_per_channel_benches_asked_for_different_group_sizes_compare_equal(tmp_path: Path) -> None:
    """linear_qcs4w runs one group spanning K whatever --group-size says; format 2 recorded the size asked."""
    old = {"rows": [row(shape="1x2048x512")], "op": "linear_qcs4w", "group_size": 32}  # format 2, asked 32
    ran = {"M": 1, "K": 2048, "N": 512, "group_size": 2048}
    new = {"rows": [_v3(row(), ran, "1x2048x512 per-channel")], "op": "linear_qcs4w", "bench_format": 3}
    [delta] = diff_bench(old, new, label="old").deltas
    assert (delta.shape, delta.kind) == ("1x2048x512 per-channel", "same")


# The bench comparison's text, worked out by hand (issue #29's mutation audit): format 3 rows of linear_q4gsw.


def _row3(kernel: str, samples: tuple[float, ...], M: int = 1, **extra: Any) -> dict[str, Any]:
    return {"shape": f"{M}x64x16 gs=32", "dims": {"M": M, "K": 64, "N": 16, "group_size": 32}, "kernel": kernel,
            "time_s": min(samples) if samples else None, "correct": True, "message": "", **repeat_stats(samples),
            **extra}


def _run3(*rows: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"op": "linear_q4gsw", "backend": "swiftshader", "webgpu": "wgpu-native",
            "adapter": {"name": "SwiftShader Device"}, "rows": list(rows), **top}


def _moved_benches() -> tuple[dict[str, Any], dict[str, Any]]:
    old = _run3(_row3("gemv", (0.002, 0.0021, 0.0022)), _row3("tiled", (0.001,)), _row3("wide", (0.003, 0.0032)),
                _row3("gemv", (0.005,), M=4), _row3("slow", (0.004,)), _row3("unm", (0.0015,)),
                _row3("same", (0.002,)), _row3("bad", (0.001,), correct=False))
    new = _run3(_row3("gemv", (0.003, 0.0031)), _row3("tiled", (0.0005,)),
                _row3("slow", (0.005,), correct=False, message="3/16 elements out of tolerance"),
                _row3("unm", (), message="timestamps read 0"), _row3("same", (0.002,)), _row3("fresh", (0.0007,)))
    return old, new


def test_the_bench_comparison_lists_every_moved_kernel_with_its_times_and_the_gate_says_why() -> None:
    from q4gsw.drift.bench import markdown

    comparison = diff_bench(*_moved_benches(), label="old.json")
    assert markdown(comparison).split("\n") == [
        "| change | shape | kernel | baseline ms | now ms | ratio | spreads ms (baseline + now) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        "| wrong | 1x64x16 gs=32 | slow | 4.000 | 5.000 | 1.25x | - + - |",
        "| SLOWER | 1x64x16 gs=32 | gemv | 2.000 | 3.000 | 1.50x | 0.200 + 0.100 |",
        "| faster | 1x64x16 gs=32 | tiled | 1.000 | 0.500 | 0.50x | - + - |",
        "| new | 1x64x16 gs=32 | fresh | - | 0.700 | - | - + - |",
        "| vanished | 1x64x16 gs=32 | wide | 3.000 | - | - | - + - |",
        "| vanished | 4x64x16 gs=32 | gemv | 5.000 | - | - | - + - |",
        "| unmeasured | 1x64x16 gs=32 | unm | 1.500 | - | - | - + - |",
        "",
        "bench baseline: 1 wrong, 1 slower, 1 faster, 1 new, 2 vanished, 1 without a time (3 kernels compared with "
        "old.json)",
        "slower: new best - baseline best > both spreads and > 10% of the baseline best"]
    assert comparison.gate() == [
        "DRIFT 1x64x16 gs=32 gemv: slower, best 2.000 -> 3.000 ms (1.50x); spreads 0.200 + 0.100 ms",
        "REMOVED 1x64x16 gs=32 wide: timed in the baseline, not in this bench of its shape",  # 4x64x16: not timed now
        "UNMEASURED 1x64x16 gs=32 unm: timed in the baseline (1.500 ms), not now: timestamps read 0"]
    assert comparison.gate(accept_removed=True) == [comparison.gate()[0], comparison.gate()[2]]
    assert comparison.notes == ("1 row of the baseline recorded as wrong (correct: false) is not compared",)
    assert [d.message for d in comparison.of("wrong")] == ["3/16 elements out of tolerance"]
    assert comparison.of("faster")[0].reason() == "best 1.000 -> 0.500 ms (0.50x); spreads 0.000 + 0.000 ms"
    assert comparison.of("new")[0].reason() == "new" and comparison.of("new")[0].gate_line() == ""


def test_a_bench_comparison_of_nothing_says_what_each_side_times() -> None:
    one = diff_bench(_run3(_row3("gemv", (0.002,))), _run3(_row3("tiled", (0.002,), M=4)), label="old.json")
    assert one.line() == "0 wrong, 0 slower, 0 faster, 1 new, 1 vanished, 0 without a time (0 kernels compared " \
                         "with old.json)"
    assert one.gate()[-1] == "NOTHING COMPARED: 0 kernels compared with old.json: the baseline times 1 kernel on " \
                             "1x64x16 gs=32; this bench 1 kernel on 4x64x16 gs=32"
    two = diff_bench(_run3(_row3("a", (0.002,)), _row3("b", (0.002,), M=4)), _run3(), label="old.json")
    assert two.gate()[-1].endswith("the baseline times 2 kernels on 1x64x16 gs=32, 4x64x16 gs=32; this bench no rows")
    empty = diff_bench(_run3(), _run3(_row3("a", (0.002,))), label="old.json")
    assert empty.gate() == ["NOTHING COMPARED: 0 kernels compared with old.json: the baseline has no rows"]
    same = diff_bench(_run3(_row3("a", (0.002,))), _run3(_row3("a", (0.002,))), label="old.json")
    assert same.gate() == [] and same.line().endswith("(1 kernel compared with old.json)")


def test_the_notes_say_when_only_the_margin_applies_and_when_the_adapters_differ() -> None:
    old = _run3({"shape": "1x64x16 gs=32", "dims": {"M": 1, "K": 64, "N": 16, "group_size": 32}, "kernel": "a",
                 "time_s": 0.002, "correct": True, "message": ""},
                {"shape": "1x64x16 gs=32", "dims": {"M": 1, "K": 64, "N": 16, "group_size": 32}, "kernel": "x",
                 "time_s": 0.002, "correct": False, "message": ""}, _row3("y", (0.001,), correct=False),
                backend="lavapipe")
    comparison = diff_bench(old, _run3(_row3("a", (0.0021,))), label="old.json", min_slowdown=0.25)
    assert comparison.notes == (
        "2 rows of the baseline recorded as wrong (correct: false) are not compared",
        "old.json records no spread over repeats (written by an older q4gsw): only the 25% margin applies to it",
        "old.json was run on ('lavapipe', 'wgpu-native', 'SwiftShader Device'), this bench on ('swiftshader', "
        "'wgpu-native', 'SwiftShader Device'): times from different adapters or WebGPU implementations are not of "
        "the same machine")


def test_a_kernel_timed_twice_in_the_new_bench_is_wrong_if_either_row_is() -> None:
    old = _run3(_row3("a", (0.002,)))
    for rows in ((_row3("a", (0.002,)), _row3("a", (0.002,), correct=False)),
                 (_row3("a", (0.002,), correct=False), _row3("a", (0.002,)))):
        comparison = diff_bench(old, _run3(*rows), label="old.json")
        assert [d.kind for d in comparison.deltas] == ["wrong"]
        assert comparison.deltas[0].message == "wrong result"  # no message recorded: said anyway


@pytest.mark.parametrize("text, says", [("x", "'x' is not a number (e.g. 0.1 for 10 %)"),
                                        ("-0.1", "'-0.1': use a fraction >= 0, e.g. 0.1 for 10 %"),
                                        ("nan", "'nan': use a fraction >= 0"), ("inf", "'inf': use a fraction")])
def test_min_slowdown_must_be_a_fraction(text: str, says: str) -> None:
    import argparse

    from q4gsw.drift.bench import _fraction

    with pytest.raises(argparse.ArgumentTypeError) as raised:
        _fraction(text)
    assert str(raised.value).startswith(says)
    assert _fraction("0") == 0.0 and _fraction("0.25") == 0.25


def test_the_rule_is_strict_at_both_bounds() -> None:
    # binary fractions: the differences are exact
    assert judge(2.0, 2.5, 0.25, 0.25, 0.1) == "same"  # + 0.5 == both spreads: not beyond them
    assert judge(2.0, 2.5, 0.0, 0.0, 0.25) == "same"  # 2.5 == 1.25 * 2.0: not beyond the margin
    assert judge(2.5, 2.0, 0.25, 0.25, 0.1) == "same"
    assert judge(2.5, 2.0, 0.0, 0.0, 0.25) == "same"
    assert judge(2.0, 1.875, 0.0, 0.0, 0.125) == "same"  # 2.0 < 1.125 * 1.875: faster needs the margin too
    assert judge(2.0, 1.75, 0.0, 0.0, 0.125) == "faster"


def test_op_problem_needs_both_ops_known_and_different() -> None:
    from q4gsw.drift.bench import op_problem

    path = Path("old.json")
    assert op_problem({"op": "linear_q4gsw"}, path, None) == ""  # an op unknown on either side: nothing to say
    assert op_problem({}, path, "sdpa") == "" and op_problem({"op": "sdpa"}, path, "sdpa") == ""
    assert op_problem({"op": "linear_q4gsw"}, path, "sdpa") == (
        "--baseline old.json: times op linear_q4gsw, this bench op sdpa: compare bench JSONs of one op (bench --op "
        "linear_q4gsw, or a baseline bench of --op sdpa)")


@pytest.mark.parametrize("compare, repeats, warned", [(None, 1, True), (None, 2, False), ("b.json", 1, False)])
def test_a_bench_of_one_repeat_is_warned_that_only_the_margin_applies(capsys, compare, repeats, warned) -> None:
    from q4gsw.drift.bench import report_bench_drift

    run = {"op": "linear_q4gsw", "rows": [row()]}
    args = SimpleNamespace(baseline=Path("old.json"), min_slowdown=MIN_SLOWDOWN, compare=compare, repeats=repeats,
                           accept_removed=False, fail_on_drift=False)
    assert report_bench_drift(run, run, args, 0) == 0
    err = capsys.readouterr().err
    assert ("warning: --repeats 1 measures no spread: only the margin tells a slower kernel from noise\n" in err) \
        is warned


def test_repeats_are_timed_with_the_kernels_own_arguments() -> None:
    from q4gsw.case import _time_dispatches

    calls: list[tuple[Any, ...]] = []

    class Recording(_Device):
        def run(self, *args: Any, repeats: int = 1, before: Any = None, warmup_s: float = 0.0,
                batch: int = 1) -> _Timed:
            calls.append((*args, repeats, before, warmup_s, batch))
            return _Timed(None, 0.0, (0.002,), warmup_s)

    case = SimpleNamespace(kernel=SimpleNamespace(name="k"))
    chain = ("the dispatch before",)
    _time_dispatches(Recording(True, ()), _Timed(0.004, 0.5), "src", case, {"wg": 64}, (3, 1), "bindings", 2, chain,
                     0.25, 4)
    assert calls == [("src", "k", {"wg": 64}, (3, 1), "bindings", 2, chain, 0.25, 4)]
    calls.clear()
    _time_dispatches(Recording(True, ()), _Timed(0.004, 0.5), "src", case, {}, (1,), "bindings", 2)
    assert calls[0][-1] == 1 and calls[0][-3] == ()  # one dispatch per submit, no chain, unless asked
    # two repeats are timed again; one dispatch alone is the first's own time
    assert _time_dispatches(Recording(True, ()), _Timed(0.004, 0.5), "src", case, {}, (1,), "b", 2)[0] == 0.002
