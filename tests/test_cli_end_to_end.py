"""The commands end to end (`q4gsw run`, `check`, `export --out` then `run --fixtures`, slim fixtures), as a user
runs them: the real export (torchao + torch.export + Vulkan partitioner) and a real SwiftShader kernel."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli

pytestmark = pytest.mark.e2e


def _results(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["results"]


def test_tiny_matrix_runs_required_and_skips_heavy(swiftshader_env, fixture_cache: Path, tiny_matrix: Path,
                                                   tmp_path: Path):
    out = tmp_path / "results"
    proc = run_cli("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--results", str(out),
                   env={"Q4GSW_CACHE": str(fixture_cache), "Q4GSW_PLOTS": "1"})  # the one run whose plots are checked
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "2 passed, 0 failed, 1 skipped"
    assert {p.name for p in (out / "plots").glob("*.png")} == {"headroom.png", "error-hist-tiny_gemv.png",
                                                              "error-hist-tiny_gemm.png"}
    assert "heavy: run `nox -s heavy`" in proc.stdout
    results = {r["config"]: r for r in _results(out)}
    assert results["tiny_gemv"]["kernel"] == "gemv" and results["tiny_gemm"]["kernel"] == "tiled"
    for name in ("tiny_gemv", "tiny_gemm"):
        r = results[name]
        assert r["status"] == "pass"
        assert "SwiftShader" in r["adapter"]["name"] and r["adapter"]["api"] == "Vulkan"
        # the implementation version (docs/versions.md): the exact package, the library it loaded, the driver's build
        assert r["adapter"]["webgpu_package"] == f"wgpu=={metadata.version('wgpu')}"
        assert r["adapter"]["webgpu_build"].startswith("wgpu-native ") and r["adapter"]["driver_package"]
        assert 0 <= r["errors"]["headroom"] <= 1 and r["errors"]["mismatches"] == 0
        assert r["provenance"]["weight_seed"] == 0 and r["tolerance"]["justification"]
        assert r["provenance"]["fixture"] and r["provenance"]["kernel_source"].endswith(".wgsl")
        assert r["case_id"] == f"{name}/{r['kernel']}/ramp@swiftshader"
        # every stage of a case that ran was timed (the export only by the config that waited for it)
        assert all(r["timings"][k] is not None for k in ("unpack_s", "golden_s", "gpu_s", "compare_s", "total_s"))
        assert r["timings"]["fixture_export_s"] > 0  # how long the fixture took to build, even from the cache
    assert results["tiny_heavy"]["status"] == "skip"
    assert json.loads((out / "results.json").read_text())["webgpu_package"] == f"wgpu=={metadata.version('wgpu')}"


def test_kv_proj_and_kv_proj_4k_on_swiftshader(swiftshader_env, fixture_cache: Path, tmp_path: Path):
    out = tmp_path / "results"
    proc = run_cli("run", "--backend", "swiftshader", "--config", "kv_proj", "--config", "kv_proj_4k",
                   "--results", str(out), env={"Q4GSW_CACHE": str(fixture_cache)}, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = _results(out)
    # one case per (kernel, input): kv_proj also runs the `outliers` input
    assert {(r["config"], r["input"]) for r in cases} >= {("kv_proj", "ramp"), ("kv_proj", "outliers"),
                                                        ("kv_proj_4k", "ramp")}
    assert proc.stdout.strip().splitlines()[-1] == f"{len(cases)} passed, 0 failed, 0 skipped"
    results = {r["config"]: r for r in cases}
    assert results["kv_proj"]["shape"] == {"dims": {"M": 1, "K": 2048, "N": 512, "group_size": 32},
                                           "text": "1x2048x512 gs=32"}
    assert results["kv_proj_4k"]["shape"]["dims"]["M"] == 4096
    assert all(r["status"] == "pass" for r in cases)


def test_check_user_kernel_and_catch_a_wrong_one(swiftshader_env, fixture_cache: Path, tiny_matrix: Path,
                                                 tmp_path: Path):
    env = {"Q4GSW_CACHE": str(fixture_cache)}
    reference = REPO / "q4gsw" / "ops" / "linear_q4gsw" / "kernels" / "mutants" / "reference.wgsl"
    dispatch = "ceil(N / wg_size), M"
    ok = run_cli("check", "--matrix", str(tiny_matrix), "--kernel", str(reference), "--dispatch", dispatch,
                 "--override", "wg_size=64", "--backend", "swiftshader", "--config", "tiny_gemv",
                 "--config", "tiny_gemm", "--results", str(tmp_path / "ok"), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "2 passed, 0 failed, 0 skipped"
    # The same kernel with the nibble offset 8 -> 7 must be caught.
    wrong = tmp_path / "offset7.wgsl"
    source = reference.read_text()
    assert source.count("& 0xFu) - 8;") == 1
    wrong.write_text(source.replace("& 0xFu) - 8;", "& 0xFu) - 7;"))
    bad = run_cli("check", "--matrix", str(tiny_matrix), "--kernel", str(wrong), "--dispatch", dispatch,
                  "--override", "wg_size=64", "--backend", "swiftshader", "--config", "tiny_gemv",
                  "--results", str(tmp_path / "bad"), env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "0 passed, 1 failed" in bad.stdout
    failure = _results(tmp_path / "bad")[0]
    assert failure["errors"]["mismatches"] > 0
    assert failure["reproduce"].startswith("python -m q4gsw check --kernel")


def test_export_out_then_run_from_fixtures(swiftshader_env, fixture_cache: Path, tiny_matrix: Path, tmp_path: Path):
    env = {"Q4GSW_CACHE": str(fixture_cache)}
    fixtures = tmp_path / "fixtures"
    exported = run_cli("export", "--matrix", str(tiny_matrix), "--out", str(fixtures), "--config", "tiny_gemm",
                       env=env)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((fixtures / "tiny_gemm" / "manifest.json").read_text())
    assert manifest["cross_checked"] is True
    assert manifest["operator"] == "et_vk.linear_q4gsw.default"
    assert {"model.pte", "weight_packed.npy", "scales.npy", "golden-ramp.npy"} <= set(manifest["files"])
    assert np.load(fixtures / "tiny_gemm" / "weight_packed.npy").shape == (40, 48)
    ran = run_cli("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--fixtures", str(fixtures),
                  "--config", "tiny_gemm", "--results", str(tmp_path / "r"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert _results(tmp_path / "r")[0]["status"] == "pass"


def test_slim_fixtures_recompute_the_golden(swiftshader_env, fixture_cache: Path, tiny_matrix: Path, tmp_path: Path):
    slim = tmp_path / "slim"
    exported = run_cli("export", "--matrix", str(tiny_matrix), "--out", str(slim), "--config", "tiny_gemv",
                       "--without-pte", "--max-golden-mib", "0", env={"Q4GSW_CACHE": str(fixture_cache)})
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((slim / "tiny_gemv" / "manifest.json").read_text())
    assert set(manifest["omitted"]) == {"model.pte", "golden-ramp.npy"}
    assert not (slim / "tiny_gemv" / "model.pte").exists()
    ran = run_cli("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--fixtures", str(slim),
                  "--config", "tiny_gemv", "--results", str(tmp_path / "r"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "golden for 'ramp' not in the fixture: computing it in fp64" in ran.stdout
    assert _results(tmp_path / "r")[0]["status"] == "pass"
