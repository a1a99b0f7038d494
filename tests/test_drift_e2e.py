"""Baselines end to end on SwiftShader: a second run of the same code moves nothing (`run --baseline`), and a real
kernel variant whose error grows, still inside the tolerance, is drift that `--fail-on-drift` turns into exit 1."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, run_cli

pytestmark = pytest.mark.e2e

REFERENCE = REPO / "q4gsw" / "ops" / "linear_q4gsw" / "kernels" / "mutants" / "reference.wgsl"
STORE = "t_out[m * params.N + n] = acc;"


def _statuses(folder: Path) -> list[str]:
    return [r["status"] for r in json.loads((folder / "results.json").read_text())["results"]]


def test_kv_proj_twice_is_no_drift(swiftshader_env, fixture_cache: Path, tmp_path: Path) -> None:
    env = {"Q4GSW_CACHE": str(fixture_cache)}
    first = run_cli("run", "--backend", "swiftshader", "--config", "kv_proj", "--results", str(tmp_path / "old"),
                    env=env, timeout=1200)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli("run", "--backend", "swiftshader", "--config", "kv_proj", "--results", str(tmp_path / "new"),
                     "--baseline", str(tmp_path / "old"), "--fail-on-drift", env=env, timeout=1200)
    assert second.returncode == 0, second.stdout + second.stderr
    cases = len(_statuses(tmp_path / "new"))
    assert f"baseline: 0 drifted, 0 changed status, 0 improved, 0 new, 0 vanished ({cases} cases compared" \
        in second.stdout
    assert "No case moved." in (tmp_path / "new" / "summary.md").read_text()


def _check(kernel: Path, tiny_matrix: Path, results: Path, env: dict[str, str], *extra: str):
    """One config is enough for the baseline's rules (each check costs a child per config)."""
    return run_cli("check", "--matrix", str(tiny_matrix), "--kernel", str(kernel), "--dispatch",
                   "ceil(N / wg_size), M", "--override", "wg_size=64", "--backend", "swiftshader",
                   "--config", "tiny_gemv", "--results", str(results), *extra, env=env)


def test_a_kernel_variant_with_a_larger_error_inside_the_tolerance_is_drift(swiftshader_env, fixture_cache: Path,
                                                                            tiny_matrix: Path, tmp_path: Path) -> None:
    env = {"Q4GSW_CACHE": str(fixture_cache)}
    source = REFERENCE.read_text()
    assert source.count(STORE) == 1
    # The same file name in each folder: the same kernel name, so the same case ids.
    kernels = {name: tmp_path / name / "reference.wgsl" for name in ("old", "same", "perturbed")}
    for name, path in kernels.items():
        path.parent.mkdir()
        # A relative error of 1e-6 on every output: far inside atol 1e-5 + rtol 1e-4, far above fp32 rounding at K=64.
        path.write_text(source.replace(STORE, "t_out[m * params.N + n] = acc * (1.0 + 1e-6);")
                        if name == "perturbed" else source)
    old = _check(kernels["old"], tiny_matrix, tmp_path / "r-old", env)
    assert old.returncode == 0, old.stdout + old.stderr

    same = _check(kernels["same"], tiny_matrix, tmp_path / "r-same", env, "--baseline", str(tmp_path / "r-old"),
                  "--fail-on-drift")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "baseline: 0 drifted" in same.stdout

    moved = _check(kernels["perturbed"], tiny_matrix, tmp_path / "r-new", env, "--baseline",
                   str(tmp_path / "r-old"))
    assert moved.returncode == 0, moved.stdout + moved.stderr  # reported, not failed
    assert set(_statuses(tmp_path / "r-new")) == {"pass"}  # every case still inside its tolerance
    assert "DRIFT tiny_gemv/reference/" in moved.stdout and "baseline: 1 drifted" in moved.stdout

    failing = _check(kernels["perturbed"], tiny_matrix, tmp_path / "r-new", env, "--baseline",
                     str(tmp_path / "r-old"), "--fail-on-drift")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    kinds = [f.get("type") for f in ET.parse(tmp_path / "r-new" / "junit.xml").getroot().iter("failure")]
    assert kinds == ["AccuracyDrift"], failing.stdout + failing.stderr
    assert "📈 DRIFT" in (tmp_path / "r-new" / "summary.md").read_text()
