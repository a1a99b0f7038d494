"""Reports from Result objects built by hand (no GPU): junit.xml, summary.md, plots, `q4gsw report` merging
(q4gsw.report.write, report_cli, junit, summary, plots), and a merge never overwrites an input."""

from __future__ import annotations

import io
import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import fake_result
from rich.console import Console

from q4gsw.commands import report
from q4gsw.report import plots
from q4gsw.report.histogram import edges, error_histogram
from q4gsw.report.result import (
    AdapterInfo,
    Errors,
    Provenance,
    Result,
    Shape,
    Timings,
    Tolerance,
    read_results,
    write_results,
)
from q4gsw.report.write import make_console, print_report, write_run_outputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOL = Tolerance(atol=1e-5, rtol=1e-4, justification="K=2048 fp32 accumulation bound", source="config")
ADAPTER = AdapterInfo(name="SwiftShader Device (Subzero)", device_type="CPU", api="Vulkan", driver="",
                        webgpu="dawn")
SHAPE = Shape({"M": 1, "K": 2048, "N": 512, "group_size": 32}, "1x2048x512 gs=32")


def _hist(scale: float, n: int = 512, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((1, n))
    y = g + rng.standard_normal((1, n)) * scale
    return error_histogram(y.astype(np.float32), g)


def passing(config="q_proj", backend="swiftshader", kernel="gemv", headroom=0.004, **extra) -> Result:
    extra = {"case_id": f"{config}/{kernel}/ramp@{backend}", "webgpu": "dawn", "routed": "gpu_gemv_fast", **extra}
    return Result(config=config, backend=backend, status="pass", message=f"max |err| 5.35e-08, headroom {headroom}",
                  tier="required", suite="llama", kernel=kernel, input="ramp", shape=SHAPE, tolerance=TOL,
                  errors=Errors(max_abs=5.35e-8, max_rel=1.6e-4, worst_index=(0, 322), mismatches=0, elements=512,
                                nmse=1e-15, headroom=headroom, histogram=_hist(1e-8)),
                  adapter=AdapterInfo(name=f"{backend} adapter", device_type="CPU", api="Vulkan", webgpu="dawn"),
                  timings=Timings(export_s=1.2, golden_s=0.4, gpu_s=0.115, compare_s=0.01, total_s=3.9, gflops=0.02),
                  peak_rss_bytes=3 * 2**29, reproduce=f"nox -s accuracy-{backend} -- --config {config}",
                  provenance=Provenance(fixture="q_proj-abc123", versions={"q4gsw": "0.1.0", "wgpu": "0.32.0"}),
                  **extra)


def failing(config="kv_proj", backend="swiftshader") -> Result:
    return Result(config=config, backend=backend, status="fail",
                  message="12/512 elements out of tolerance; worst (m, n) = (0, 17): got 1.5, golden 1.49 | pipe",
                  case_id=f"{config}/gemv/ramp@{backend}", webgpu="dawn",
                  tier="required", suite="llama", kernel="gemv", input="ramp", shape=SHAPE, tolerance=TOL,
                  errors=Errors(max_abs=3.1e-4, max_rel=2.5e-2, worst_index=(0, 17), mismatches=12, elements=512,
                                nmse=1e-9, headroom=31.2, histogram=_hist(1e-4, seed=1)),
                  adapter=ADAPTER, timings=Timings(gpu_s=0.2),
                  reproduce=f"nox -s accuracy-{backend} -- --config {config}")


def crashed(config="gate_proj", backend="swiftshader") -> Result:
    # A run failure before any comparison: no errors, no histogram, and (older data) no case id.
    return Result(config=config, backend=backend, status="fail", message="GPU run of 'gate_proj' crashed with SIGSEGV",
                  tier="required", suite="llama",
                  shape=Shape({"M": 1, "K": 2048, "N": 8192, "group_size": 32}, "1x2048x8192 gs=32"),
                  reproduce=f"nox -s accuracy-{backend} -- --config {config}")


def skipped(config="lm_head", backend="swiftshader") -> Result:
    return Result(config=config, backend=backend, status="skip", message="heavy: run `nox -s heavy`", tier="heavy",
                  suite="llama", reproduce=f"nox -s heavy -- --backend {backend} --config {config}")


def unsupported(config="odd", backend="swiftshader") -> Result:
    return Result(config=config, backend=backend, status="unsupported",
                  message="no kernel in matrix.toml applies to this shape", tier="required")


META = {"q4gsw_version": "0.1.0", "command": "python -m q4gsw run --backend swiftshader", "backend": "swiftshader",
        "started": "2026-11-25T15:35:22Z", "wall_s": 12.5, "host": "ci-host", "interrupted": False}


def _all() -> list[Result]:
    return [passing(), failing(), crashed(), skipped(), unsupported()]


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def no_plots(monkeypatch):
    """Skip matplotlib where a test is not about plots (rendering costs ~0.5 s a run)."""
    def unavailable():
        raise ImportError("plots disabled in this test")

    monkeypatch.setattr(plots, "_load_pyplot", unavailable)


# ------------------------------------------------------------------------------------------------
# JUnit
# ------------------------------------------------------------------------------------------------


def test_junit_counts_names_and_failure_text(tmp_path, no_plots):
    write_run_outputs(tmp_path, _all(), META)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) == ("5", "2", "2", "0")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["swiftshader"]
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == ["q_proj/gemv/ramp", "kv_proj/gemv/ramp", "gate_proj", "lm_head", "odd"]
    # classname names the WebGPU implementation that ran the case, where the result records one.
    assert [c.get("classname") for c in cases] == ["swiftshader.dawn", "swiftshader.dawn", "swiftshader",
                                                   "swiftshader", "swiftshader"]
    case_props = {p.get("name"): p.get("value") for p in cases[0].find("properties")}
    assert case_props["webgpu"] == "dawn" and case_props["routed"] == "gpu_gemv_fast"
    assert case_props["shape"] == "1x2048x512 gs=32"
    assert cases[4].find("properties") is None  # nothing recorded: no empty <properties>

    failure = cases[1].find("failure")
    assert failure.get("type") == "ToleranceExceeded"
    assert failure.get("message").startswith("12/512 elements out of tolerance")
    text = failure.text
    assert "max abs error 3.100e-04" in text and "max rel error 2.500e-02" in text
    assert "worst (m, n) = (0, 17)" in text
    assert "12/512 elements out of tolerance" in text
    assert "atol 1e-05 + rtol 0.0001" in text and "K=2048 fp32 accumulation bound" in text
    assert "webgpu: dawn; routed variant: n/a" in text
    assert text.splitlines()[-1] == "reproduce: nox -s accuracy-swiftshader -- --config kv_proj"
    assert "--shard" not in text

    crash = cases[2].find("failure")
    assert crash.get("type") == "RunFailure" and "SIGSEGV" in crash.get("message")
    assert "reproduce: nox -s accuracy-swiftshader -- --config gate_proj" in crash.text

    assert cases[0].find("failure") is None and cases[0].find("skipped") is None
    assert cases[3].find("skipped").get("message") == "skip: heavy: run `nox -s heavy`"
    assert cases[4].find("skipped").get("type") == "unsupported"
    assert float(cases[0].get("time")) == pytest.approx(0.115)
    props = {p.get("name"): p.get("value") for p in suites[0].find("properties")}
    assert props["adapter"] == "swiftshader adapter" and props["version.wgpu"] == "0.32.0"
    assert props["webgpu"] == "dawn"
    # system-out names the case by its recorded id, or config/kernel/input@backend for results without one.
    assert cases[0].find("system-out").text.startswith("PASS q_proj/gemv/ramp@swiftshader: ")
    assert cases[2].find("system-out").text.startswith("FAIL gate_proj@swiftshader: ")


def test_junit_reads_back_with_junitparser(tmp_path, no_plots):
    junitparser = pytest.importorskip("junitparser")
    write_run_outputs(tmp_path, _all(), META)
    xml = junitparser.JUnitXml.fromfile(str(tmp_path / "junit.xml"))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.skipped, suite.errors) == (5, 2, 2, 0)
    results = {case.name: case.result for case in suite}
    assert results["q_proj/gemv/ramp"] == []
    assert isinstance(results["kv_proj/gemv/ramp"][0], junitparser.Failure)
    assert isinstance(results["lm_head"][0], junitparser.Skipped)


def test_junit_escapes_xml_special_characters(tmp_path, no_plots):
    r = Result(config="c", backend="b", status="fail", message='bad <tag> & "quote" ]]> end', reproduce="x < y")
    write_run_outputs(tmp_path, [r], {})
    failure = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure.get("message") == 'bad <tag> & "quote" ]]> end'
    assert "reproduce: x < y" in failure.text


# ------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------


def _table_rows(markdown: str) -> list[list[str]]:
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]


def test_markdown_table_and_failures(tmp_path, no_plots):
    write_run_outputs(tmp_path, _all(), META)
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("## q4gsw accuracy: swiftshader")
    assert "**1 passed, 2 failed, 1 skipped, 1 unsupported**" in md
    rows = _table_rows(md)
    header, body = rows[0], rows[1:]
    assert header[:8] == ["status", "config", "shape", "kernel", "input", "backend", "webgpu", "routed"]
    assert len(body) == 5
    by_config = {row[1]: dict(zip(header, row, strict=True)) for row in body}
    assert by_config["q_proj"]["status"] == "✅ pass"
    assert by_config["q_proj"]["headroom"] == "0.004"
    assert by_config["q_proj"]["max abs err"] == "5.35e-08"
    assert by_config["q_proj"]["shape"] == "1x2048x512 gs=32"
    # Which WebGPU implementation ran, the routed variant, and the details the console table leaves out.
    assert (by_config["q_proj"]["webgpu"], by_config["q_proj"]["routed"]) == ("dawn", "gpu_gemv_fast")
    assert by_config["kv_proj"]["routed"] == "" and by_config["gate_proj"]["webgpu"] == ""
    assert by_config["q_proj"]["adapter"] == "swiftshader adapter"
    assert by_config["q_proj"]["worst (m, n)"] == "(0, 322)"
    assert by_config["q_proj"]["export/golden/gpu/compare s"] == "1.2/0.4/0.1/0.0"
    assert by_config["kv_proj"]["export/golden/gpu/compare s"] == "-/-/0.2/-"
    assert by_config["q_proj"]["peak RSS"] == "1.50 GiB"
    assert by_config["q_proj"]["GFLOP/s"] == "0.02"
    assert "WebGPU dawn" in md
    assert by_config["kv_proj"]["status"] == "❌ FAIL"
    assert by_config["kv_proj"]["worst (m, n)"] == "(0, 17)"
    assert by_config["kv_proj"]["mismatches"] == "12/512"
    assert by_config["kv_proj"]["atol / rtol"] == "1e-05 / 0.0001"
    assert by_config["lm_head"]["status"].endswith("skip")
    # Failures list the message (pipes escaped) and the exact reproduce line in a code block.
    failures = md.split("### Failures", 1)[1].split("###", 1)[0]
    assert "\\| pipe" in failures
    assert "on `swiftshader` (dawn)" in failures
    assert "  nox -s accuracy-swiftshader -- --config kv_proj\n" in failures
    assert "  nox -s accuracy-swiftshader -- --config gate_proj\n" in failures
    assert "heavy: run `nox -s heavy`" in md.split("### Skipped and unsupported", 1)[1]
    assert "matplotlib is not installed" in md  # no_plots: the note replaces the plot list


def test_markdown_is_appended_to_github_step_summary(tmp_path, monkeypatch, no_plots):
    target = tmp_path / "step_summary.md"
    target.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    write_run_outputs(tmp_path / "a", [passing()], META)
    write_run_outputs(tmp_path / "b", [failing()], META)
    text = target.read_text()
    assert text.startswith("earlier step\n")
    assert text.count("## q4gsw accuracy: swiftshader") == 2
    assert (tmp_path / "a" / "summary.md").read_text().strip() in text


# ------------------------------------------------------------------------------------------------
# Console table
# ------------------------------------------------------------------------------------------------


def _realistic() -> list[Result]:
    """A run's worth of results with the matrix's longest names, every status and wide numbers."""
    long = [passing(config="edge_weights_gemm", kernel=kernel, headroom=h)
            for kernel, h in (("gpu_gemv_rows", 0.0123), ("gpu_gemm_f16", 0.4567), ("gpu_gemv_fast", 0.0))]
    slow = replace(passing(config="lm_head", kernel="gpu_gemv_fast"),
                   timings=Timings(export_s=812.3, golden_s=95.0, gpu_s=0.000113, compare_s=2.5, total_s=1234.5,
                                   gflops=12345.67), peak_rss_bytes=37 * 2**30)
    nonfinite = replace(failing(config="edge_huge_scales"), input="outliers",
                        case_id="edge_huge_scales/gemv/outliers@swiftshader", message="4096 non-finite outputs",
                        errors=Errors(max_abs=float("inf"), max_rel=float("nan"), worst_index=(16, 4095),
                                      mismatches=4096, elements=4096, nmse=float("nan"), headroom=float("inf"),
                                      nonfinite=4096))
    return [*long, slow, nonfinite, failing(), crashed(config="edge_partial_tiles"), skipped(), unsupported(),
            unsupported(config="edge_weights_gemv"), passing(config="kv_proj_8k", backend="lavapipe",
                                                              kernel="gpu_gemv_rows", webgpu="wgpu-native")]


def test_console_table_fits_100_columns(capsys):
    results = _realistic()
    console = Console(width=100, record=True, force_terminal=False, file=io.StringIO())
    print_report(results, console)
    text = console.export_text()
    assert text.strip()
    too_long = [line for line in text.splitlines() if len(line) > 100]
    assert not too_long, too_long
    # One line per case: nothing is wrapped onto a second line at this width.
    table_lines = [line for line in text.splitlines() if line.split()[:1] and line.split()[0] in
                   {r.config for r in results}]
    assert len(table_lines) == len(results)
    assert "…" not in text  # and nothing truncated
    assert "q4gsw results: swiftshader (dawn)" in text and "q4gsw results: lavapipe (wgpu-native)" in text
    # The wide details are left to summary.md and results.json.
    assert "GiB" not in text and "322" not in text and "swiftshader adapter" not in text
    assert "FAIL edge_partial_tiles@swiftshader: GPU run" in text
    assert "FAIL kv_proj/gemv/ramp@swiftshader: 12/512" in text
    assert capsys.readouterr().out.strip() == "5 passed, 3 failed, 1 skipped, 2 unsupported"


def test_piped_console_is_100_columns(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal, like CI logs and nox
    assert make_console().width == 100


# ------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------


def test_plots_are_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "error-hist-old_config.png").write_bytes(b"stale plot of an earlier run here")
    write_run_outputs(tmp_path, [*_all(), passing(backend="lavapipe"), passing(kernel="tiled", headroom=0.0)], META)
    files = sorted(p.name for p in (tmp_path / "plots").iterdir() if not p.name.startswith("."))
    # One histogram per config that recorded one (gate_proj crashed: none), and the headroom chart.
    assert files == ["error-hist-kv_proj.png", "error-hist-q_proj.png", "headroom.png"]
    assert (tmp_path / "plots" / ".q4gsw-partial").is_file()  # marks the folder as q4gsw's to replace
    for name in files:
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 5000
    # gate_proj failed before any comparison: its FAIL line says why, a histogram note would only repeat it
    assert "no error histogram" not in (tmp_path / "summary.md").read_text()


def test_plots_switched_off_draw_nothing_and_still_clear_an_earlier_runs(tmp_path, monkeypatch):
    """Q4GSW_PLOTS=0: no PNG and pyplot never loaded, yet an earlier run's plots there go (never mixed with this
    run's results); results.json, junit.xml and summary.md as usual."""
    from q4gsw.report import plots

    def unavailable() -> None:
        raise AssertionError("pyplot loaded although Q4GSW_PLOTS=0")

    monkeypatch.setattr(plots, "_load_pyplot", unavailable)
    monkeypatch.setenv(plots.PLOTS_ENV, "0")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "headroom.png").write_bytes(b"stale plot of an earlier run here")
    write_run_outputs(tmp_path, [*_all(), passing(kernel="tiled", headroom=0.0)], META)
    assert [p.name for p in (tmp_path / "plots").iterdir()] == [".q4gsw-partial"]
    assert {"results.json", "junit.xml", "summary.md"} <= {p.name for p in tmp_path.iterdir()}


def test_plots_of_long_names_leak_no_matplotlib_warning(tmp_path, capsys):
    """Issue 29: fig.tight_layout() could not fit long case names in the headroom chart and said so with
    "UserWarning: Tight layout not applied" and a source path, in the middle of a run's output. The image now
    grows to hold every label; no warning of any kind comes out, drawn ahead on the thread or at the end."""
    import warnings

    pytest.importorskip("matplotlib")
    long = "c" * 62
    results = [passing(config=f"{long}{i:02d}", kernel="q4gsw_linear_gemm_steel_half_bk64", headroom=0.1 * (i + 1),
                       case_id=f"{long}{i:02d}/q4gsw_linear_gemm_steel_half_bk64/ramp@{backend}", backend=backend)
               for i in range(3) for backend in ("swiftshader", "lavapipe")]
    exact = replace(passing(config="exact"), errors=replace(passing().errors, max_abs=0.0, headroom=0.0,
                                                             histogram=error_histogram(np.ones((1, 8), np.float32),
                                                                                       np.ones((1, 8)))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ahead = plots.HistogramsAhead()
        for result in [*results, exact]:
            ahead.add(result)
        files, notes = plots.write_plots(tmp_path / "plots", [*results, exact], ahead)
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr().err == "" and notes == []
    assert len(files) == 5 and all(f.read_bytes()[:8] == PNG_MAGIC for f in files)


def test_no_histogram_is_warned_only_where_a_case_was_compared(tmp_path, capsys):
    """issue 22: a backend with no adapter fails every config before any comparison; one FAIL per config says
    so, and no "no error histogram for <config>" line per config repeats it. A compared case without a
    histogram (results of an older q4gsw) is still named."""
    pytest.importorskip("matplotlib")
    no_adapter = [replace(crashed(config=f"c{i}"), message="no adapter for backend 'dawn-vulkan'") for i in range(13)]
    older = replace(passing(config="older"), errors=replace(passing().errors, histogram={}))
    write_run_outputs(tmp_path, [*no_adapter, older], META)
    err = capsys.readouterr().err
    assert err.count("no error histogram") == 1 and "no error histogram for older" in err


def test_a_run_that_compared_nothing_loads_no_pyplot_and_still_clears_the_old_plots(tmp_path, monkeypatch):
    """Every config failed before its comparison (no adapter, an unusable cache): nothing to draw, so pyplot is not
    loaded (~0.7 CPU s of each such run), no note about matplotlib, and an earlier run's plots still go."""
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "error-hist-q_proj.png").write_bytes(b"an earlier run's plot")
    (folder / "headroom.png").write_bytes(b"an earlier run's chart")

    def no_pyplot():
        raise AssertionError("pyplot loaded for a run that compared nothing")

    monkeypatch.setattr(plots, "_load_pyplot", no_pyplot)
    assert plots.write_plots(folder, [crashed(), crashed(config="q_proj"), skipped()]) == ([], [])
    assert sorted(p.name for p in folder.iterdir()) == [".q4gsw-partial"]


def test_histograms_drawn_during_the_run_are_the_ones_written(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    q_proj = [passing(), passing(kernel="tiled", headroom=0.0)]
    kv_proj = [failing()]
    results = [*q_proj, *kv_proj, passing(config="late", kernel="gemv")]
    ahead = plots.HistogramsAhead()
    for result in results:
        ahead.add(result)
    ahead.finish()  # what write_plots does first: draws what is pending (the last config), then stops
    drawn = {config: ahead.drawn(config, mine) for config, mine in (("q_proj", q_proj), ("kv_proj", kv_proj))}
    assert all(found and png[:8] == PNG_MAGIC for found, png in drawn.values())
    assert ahead.drawn("q_proj", q_proj[:1]) == (False, None)  # other results: drawn again at the end
    write_run_outputs(tmp_path / "fresh", results, META)

    def must_not_draw(plt, config, mine):
        raise AssertionError(f"{config} was drawn again")

    monkeypatch.setattr(plots, "_histogram_png", must_not_draw)
    write_run_outputs(tmp_path / "ahead", results, META, plots_ahead=ahead)
    for name in ("error-hist-q_proj.png", "error-hist-kv_proj.png", "error-hist-late.png"):
        assert (tmp_path / "ahead" / "plots" / name).read_bytes() == (tmp_path / "fresh" / "plots" / name).read_bytes()


def test_missing_matplotlib_degrades_gracefully(tmp_path, monkeypatch, capsys):
    def no_matplotlib():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(plots, "_load_pyplot", no_matplotlib)
    path = write_run_outputs(tmp_path, _all(), META)
    assert path == tmp_path / "results.json" and path.is_file()
    assert (tmp_path / "junit.xml").is_file()
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())
    assert "matplotlib is not installed" in (tmp_path / "summary.md").read_text()
    assert "warning: plots skipped: matplotlib is not installed" in capsys.readouterr().err


def test_a_broken_report_never_loses_results_json(tmp_path, monkeypatch, capsys, no_plots):
    import q4gsw.report.junit

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(q4gsw.report.junit, "write_junit", boom)
    write_run_outputs(tmp_path, [passing()], META)
    results, meta = read_results(tmp_path / "results.json")
    assert [r.config for r in results] == ["q_proj"] and meta["host"] == "ci-host"
    assert "junit.xml not written: RuntimeError: disk full" in capsys.readouterr().err


def test_error_histogram_counts_every_output():
    g = np.array([[1.0, 2.0, 3.0, 4.0, 1e-20, 6.0]])
    y = np.array([[1.0, 2.0 + 3e-7, 3.0 + 3e-3, np.nan, 0.0, 6.0 + 1e6]], dtype=np.float64)
    h = error_histogram(y, g)
    assert h["log10_edges"] == edges()
    assert len(h["counts"]) == len(h["log10_edges"]) - 1
    assert (h["zero"], h["nonfinite"], h["below"], h["above"]) == (1, 1, 1, 1)
    assert sum(h["counts"]) == 2  # 3e-7 and 3e-3
    e = np.array(h["log10_edges"])
    for value in (3e-7, 3e-3):
        i = int(np.searchsorted(e, np.log10(value), side="right")) - 1
        assert h["counts"][i] == 1
    json.dumps(h)  # stored in results.json


# ------------------------------------------------------------------------------------------------
# python -m q4gsw report: re-render and merge
# ------------------------------------------------------------------------------------------------


def _two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "runs" / "swiftshader", tmp_path / "runs" / "lavapipe"
    write_run_outputs(a, [passing(), failing(), skipped()], {**META, "backend": "swiftshader"})
    write_run_outputs(b, [passing(backend="lavapipe", headroom=0.02), failing(backend="lavapipe"),
                          skipped(backend="lavapipe")], {**META, "backend": "lavapipe", "host": "other"})
    return a, b


def test_report_merges_two_result_folders_into_one_table(tmp_path, capsys, monkeypatch):
    with monkeypatch.context() as m:  # the per-run plots are not under test here, the merged ones are
        m.setattr(plots, "_load_pyplot", lambda: (_ for _ in ()).throw(ImportError("off")))
        a, b = _two_runs(tmp_path)
    out = tmp_path / "merged"
    assert report.main([str(a), str(b), "--out", str(out), "--no-step-summary", "--quiet"]) == 0
    assert "2 passed, 2 failed, 2 skipped" in capsys.readouterr().out
    md = (out / "summary.md").read_text()
    rows = _table_rows(md)[1:]
    assert len(rows) == 6
    # One table, grouped by config with the backends side by side.
    assert [(r[1], r[5]) for r in rows] == [("q_proj", "lavapipe"), ("q_proj", "swiftshader"),
                                            ("kv_proj", "lavapipe"), ("kv_proj", "swiftshader"),
                                            ("lm_head", "lavapipe"), ("lm_head", "swiftshader")]
    assert "merged from 2 result files" in md
    assert "nox -s accuracy-lavapipe -- --config kv_proj" in md
    results, meta = read_results(out / "results.json")
    assert len(results) == 6
    assert [m["path"] for m in meta["merged_from"]] == [str(a / "results.json"), str(b / "results.json")]
    assert meta["backends"] == ["lavapipe", "swiftshader"]
    root = ET.parse(out / "junit.xml").getroot()
    assert sorted(s.get("name") for s in root.findall("testsuite")) == ["lavapipe", "swiftshader"]
    assert root.get("tests") == "6" and root.get("failures") == "2"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert plots.MISSING_MATPLOTLIB in md
    else:
        assert (out / "plots" / "headroom.png").read_bytes()[:8] == PNG_MAGIC
        assert (out / "plots" / "error-hist-kv_proj.png").read_bytes()[:8] == PNG_MAGIC


def test_report_finds_results_recursively_and_skips_earlier_merges(tmp_path, no_plots):
    _two_runs(tmp_path)
    runs = tmp_path / "runs"
    assert report.main([str(runs), "--out", str(runs / "merged"), "--no-step-summary", "--quiet"]) == 0
    # Re-running over the parent must not count the earlier merged results.json again.
    assert report.main([str(runs), "--out", str(runs / "merged"), "--no-step-summary", "--quiet"]) == 0
    results, meta = read_results(runs / "merged" / "results.json")
    assert len(results) == 6 and len(meta["merged_from"]) == 2


def test_report_rerenders_one_folder_in_place(tmp_path, no_plots):
    a, _ = _two_runs(tmp_path)
    before = (a / "results.json").read_bytes()
    (a / "summary.md").unlink()
    (a / "junit.xml").unlink()
    assert report.main([str(a), "--no-step-summary", "--quiet"]) == 0
    assert (a / "results.json").read_bytes() == before
    assert "| ❌ FAIL | kv_proj |" in (a / "summary.md").read_text()
    assert ET.parse(a / "junit.xml").getroot().get("tests") == "3"


def test_report_dedupes_skips_repeated_by_shards_and_strict_exit(tmp_path, no_plots):
    one, two = tmp_path / "s1", tmp_path / "s2"
    write_run_outputs(one, [passing(), skipped()], META)
    write_run_outputs(two, [failing(), skipped()], META)
    out = tmp_path / "out"
    assert report.main([str(one), str(two), "--out", str(out), "--no-step-summary", "--quiet", "--strict"]) == 1
    results, _ = read_results(out / "results.json")
    assert [r.status for r in results] == ["pass", "skip", "fail"]


def test_report_appends_merged_table_to_step_summary(tmp_path, monkeypatch, no_plots):
    a, b = _two_runs(tmp_path)
    target = tmp_path / "summary"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert report.main([str(a), str(b), "--out", str(tmp_path / "m"), "--title", "all jobs", "--quiet"]) == 0
    assert target.read_text().startswith("## all jobs\n")


@pytest.mark.parametrize("make", ["missing", "empty", "garbage"])
def test_report_usage_errors_exit_2(tmp_path, capsys, make):
    source = tmp_path / "src"
    if make == "empty":
        source.mkdir()
    elif make == "garbage":
        source.mkdir()
        (source / "results.json").write_text("{not json")
    assert report.main([str(source), "--no-step-summary"]) == 2
    assert str(source) in capsys.readouterr().err


def test_plots_never_replace_a_folder_q4gsw_did_not_write(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    mine = tmp_path / "plots" / "my-notes.txt"
    mine.parent.mkdir()
    mine.write_text("the user's own file")
    write_run_outputs(tmp_path, _all(), META)
    assert mine.read_text() == "the user's own file"
    assert not (tmp_path / "plots" / "headroom.png").exists()


def test_plots_never_delete_a_user_folder_named_like_a_plot(tmp_path: Path) -> None:
    """issue 22: clean-up removes only the plain files an earlier run wrote, by name and kind; a folder the
    user named error-hist-*.png survives with its contents, in a q4gsw plots folder and in one without the
    marker (a folder is never q4gsw's plot)."""
    pytest.importorskip("matplotlib")
    marked = tmp_path / "marked" / "plots"
    write_run_outputs(tmp_path / "marked", _all(), META)  # an earlier run: plots/ is q4gsw's
    (marked / "error-hist-old_config.png").write_bytes(b"stale plot of an earlier run")
    unmarked = tmp_path / "unmarked" / "plots"
    unmarked.mkdir(parents=True)
    kept = []
    for plots_dir in (marked, unmarked):
        for name in ("error-hist-x.png", "error-hist-q_proj.png", "headroom.png"):
            (plots_dir / name).unlink(missing_ok=True)  # the earlier run's plot, replaced by the user's folder
            (plots_dir / name).mkdir()
            (plots_dir / name / "keep.txt").write_text("the user's")
            kept.append(plots_dir / name / "keep.txt")
        (plots_dir / "error-hist-link.png").symlink_to(plots_dir / "error-hist-x.png" / "keep.txt")
    write_run_outputs(tmp_path / "marked", _all(), META)
    write_run_outputs(tmp_path / "unmarked", _all(), META)
    assert all(p.read_text() == "the user's" for p in kept)
    assert (marked / "error-hist-link.png").is_symlink()  # a link is not a file q4gsw wrote either
    assert not (marked / "error-hist-old_config.png").exists()  # the earlier run's plot is replaced
    assert (marked / "error-hist-kv_proj.png").read_bytes()[:8] == PNG_MAGIC
    summary = (tmp_path / "marked" / "summary.md").read_text()
    assert "histogram of q_proj not written" in summary and "headroom chart not written" in summary
    assert "plots not written" in (tmp_path / "unmarked" / "summary.md").read_text()  # not q4gsw's folder


# ------------------------------------------------------------------------------------------------
# A merge never overwrites an input (issue 14)
# ------------------------------------------------------------------------------------------------

def _run_folder(folder: Path, config: str) -> Path:
    write_results(folder / "results.json", [fake_result(config, "pass")], {"backend": "swiftshader"})
    return folder


MERGES = [  # (id, sources, --out or None, exit code); paths relative to tmp_path, runs in a/ and tree/b/
    ("out-is-an-input-folder", ["a", "tree/b"], "a", 2),
    ("out-is-an-input-file-folder", ["a/results.json", "tree/b"], "a", 2),
    ("out-is-a-folder-found-in-a-source", ["tree", "a"], "tree/b", 2),
    ("out-is-an-input-file", ["a", "tree/b"], "a/results.json", 2),
    ("out-is-a-file", ["a", "tree/b"], "a-file", 2),
    ("merge-elsewhere", ["a", "tree/b"], "merged", 0),
    ("one-folder-in-place", ["a"], None, 0),
    ("one-folder-into-itself", ["a"], "a", 0),
]


@pytest.mark.parametrize("sources, out, code", [m[1:] for m in MERGES], ids=[m[0] for m in MERGES])
def test_report_merge_never_overwrites_an_input(tmp_path: Path, sources: list[str], out: str | None,
                                                code: int) -> None:
    from q4gsw.commands import report

    _run_folder(tmp_path / "a", "a")
    _run_folder(tmp_path / "tree" / "b", "b")
    (tmp_path / "a-file").write_text("the user's file")
    inputs_before = {p: p.read_bytes() for p in (tmp_path / "a" / "results.json", tmp_path / "tree/b/results.json",
                                                 tmp_path / "a-file")}
    argv = [str(tmp_path / s) for s in sources] + (["--out", str(tmp_path / out)] if out else [])
    assert report.main([*argv, "--quiet", "--no-step-summary"]) == code
    assert {p: p.read_bytes() for p in inputs_before} == inputs_before


# ------------------------------------------------------------------------------------------------
# A full disk never loses the previous results (issue 22)
# ------------------------------------------------------------------------------------------------

def _full_disk(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> None:
    """Files with these names (written whole, or through NAME.tmp) fail as on a full disk: half written, then
    ENOSPC."""
    import errno
    import os

    real_open = Path.open

    class FullDisk(io.BufferedWriter):
        def write(self, data) -> int:  # type: ignore[override]
            super().write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_on_a_full_disk(self: Path, mode: str = "r", *args, **kwargs):
        if "w" not in mode or self.name.removesuffix(".tmp") not in names:
            return real_open(self, mode, *args, **kwargs)
        raw = FullDisk(io.FileIO(self, "w"))
        return raw if "b" in mode else io.TextIOWrapper(raw, encoding=kwargs.get("encoding"))

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)


def _reports(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_full_disk_leaves_the_previous_results_intact(tmp_path, monkeypatch, capsys, no_plots):
    from q4gsw.report.result import ReportNotWritten

    write_run_outputs(tmp_path, [passing()], META)
    before = _reports(tmp_path)
    assert set(before) == {"results.json", "junit.xml", "summary.md"}
    _full_disk(monkeypatch, ("results.json", "junit.xml", "summary.md"))
    with pytest.raises(ReportNotWritten) as raised:
        write_run_outputs(tmp_path, [failing()], META)
    assert str(raised.value) == (f"{tmp_path / 'results.json'} not written (No space left on device): the previous "
                                 "results.json there, if any, is unchanged")
    assert _reports(tmp_path) == before  # no .tmp left, and the other reports still those of the previous run


def test_a_full_disk_for_the_other_reports_keeps_them_and_says_why(tmp_path, monkeypatch, capsys, no_plots):
    write_run_outputs(tmp_path, [passing()], META)
    before = _reports(tmp_path)
    _full_disk(monkeypatch, ("junit.xml", "summary.md"))
    capsys.readouterr()
    write_run_outputs(tmp_path, [failing()], META)
    after = _reports(tmp_path)
    assert set(after) == set(before)  # no junit.xml.tmp, no summary.md.tmp
    assert after["junit.xml"] == before["junit.xml"] and after["summary.md"] == before["summary.md"]
    assert [r.status for r in read_results(tmp_path / "results.json")[0]] == ["fail"]  # results.json is this run's
    err = capsys.readouterr().err.splitlines()
    assert f"warning: {tmp_path / 'junit.xml'} not written (No space left on device): the previous junit.xml " \
           "there, if any, is unchanged" in err
    assert any(line.startswith(f"warning: {tmp_path / 'summary.md'} not written (No space left") for line in err)


def test_a_run_whose_results_cannot_be_written_fails_with_one_line(tmp_path, monkeypatch, capsys, no_plots):
    from q4gsw.cases import build_selection
    from q4gsw.matrix.load import load_matrix
    from q4gsw.run import finish
    from q4gsw.run.stages import RunOptions

    matrix = Path(__file__).resolve().parent.parent / "matrix.toml"
    selection = build_selection(load_matrix(matrix), "swiftshader", tiers=["required"], suites=["llama"])

    def every_case_passed(selection, options, root, on_result, matrix_order):
        for config in selection.configs:
            on_result(passing(config=config.name))

    monkeypatch.setattr(finish, "run_selection", every_case_passed)
    write_results(tmp_path / "results.json", [failing()], META)  # the previous run's
    before = _reports(tmp_path)
    _full_disk(monkeypatch, ("results.json",))
    capsys.readouterr()
    options = RunOptions(fixtures=None)  # type: ignore[arg-type]
    code = finish.run_and_report(selection, options, matrix.parent, tmp_path, matrix)
    assert code == 1  # every case passed, but results/ still holds the previous run's: not a success
    assert _reports(tmp_path) == before
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'results.json'} not written (No space left on device): the previous results.json there, "
        "if any, is unchanged; the run's results are only in the table above"]


def test_report_on_a_full_disk_exits_1_with_one_line(tmp_path, monkeypatch, capsys, no_plots):
    write_results(tmp_path / "a" / "results.json", [passing()], META)
    _full_disk(monkeypatch, ("results.json",))
    assert report.main([str(tmp_path / "a"), "--out", str(tmp_path / "merged"), "--no-step-summary"]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'merged' / 'results.json'} not written (No space left on device)" in err
    assert not list((tmp_path / "merged").iterdir())
