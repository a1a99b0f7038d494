"""Fixture integrity (issue #8): sha256 manifest checked on load, corrupt cache entries rebuilt (and said so),
corrupt explicit fixtures fail their config, a shared cache survives concurrent exports, and `kill -9` during an
export leaves nothing a later run would trust, and two runs started together on a fresh cache both succeed (one
provisions and exports, the other waits and reuses). Every cache here is a temporary one.

The damage tests check verify_fixture on synthetic fixtures (tests/helpers.write_fixture, no torch): they are
offline. The tests that export or run on SwiftShader are marked e2e.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli, write_fault_matrix
from helpers import random_packed, results_of, write_fixture, write_matrix

from q4gsw.export.fixtures import MANIFEST, FixtureError, fixture_dir, golden_file, verify_fixture
from q4gsw.matrix.load import Config, load_matrix
from q4gsw.ops.linear_q4gsw import SCALES_FILE, WEIGHT_FILE


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    return write_fault_matrix(tmp_path / "matrix.toml")


def _config(matrix: Path, name: str) -> Config:
    return load_matrix(matrix).config(name)


@pytest.fixture
def synthetic(tmp_path: Path, matrix: Path) -> Path:
    """Fixtures of the fault matrix's configs a and b, written with numpy (the export's format, no torch)."""
    folder = tmp_path / "synthetic"
    for name in "ab":
        config = _config(matrix, name)
        write_fixture(folder, config, random_packed(config.dims["N"], config.dims["K"], config.dims["group_size"],
                                                    np.random.default_rng([8, config.dims["M"]])))
    return folder


def _flip_byte(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_manifest(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST).read_text())
        edit(manifest)
        (folder / MANIFEST).write_text(json.dumps(manifest))
    return apply


# (id, damage applied to a copy of fixture 'a', expected FixtureError text)
DAMAGE: list[tuple[str, Callable[[Path], object], str]] = [
    ("truncated-weights", lambda f: _truncate(f / WEIGHT_FILE), r"weight_packed.npy: size \d+ != \d+ in manifest.json "
                                                                 r"\(truncated\?\)"),
    ("corrupted-scales", lambda f: _flip_byte(f / SCALES_FILE), r"scales.npy: sha256 does not match manifest.json "
                                                                 r"\(corrupted\)"),
    ("corrupted-golden", lambda f: _flip_byte(f / golden_file("ramp"), 200), r"golden-ramp.npy: sha256 does not match"),
    ("missing-golden", lambda f: (f / golden_file("ramp")).unlink(), r"golden-ramp.npy: missing \(listed in "
                                                                      r"manifest.json\)"),
    ("no-manifest", lambda f: (f / MANIFEST).unlink(), r"no manifest.json \(incomplete or not a fixture\)"),
    ("truncated-manifest", lambda f: _truncate(f / MANIFEST), r"manifest.json: corrupt manifest \("),
    ("manifest-not-utf8", lambda f: (f / MANIFEST).write_bytes(b"\xff\xfe{}"), r"manifest.json: corrupt manifest"),
    ("manifest-a-list", lambda f: (f / MANIFEST).write_text("[]"), r"manifest.json: corrupt manifest \(not"),
    ("manifest-bad-entry", _edit_manifest(lambda m: m["files"].update({SCALES_FILE: "abc"})),
     r"manifest.json: corrupt manifest \(not"),
    ("manifest-without-weights", _edit_manifest(lambda m: m["files"].pop(WEIGHT_FILE)),
     r"manifest.json lists no weight_packed.npy"),
    ("other-config", _edit_manifest(lambda m: m["config"]["dims"].update(M=1)),
     r"fixture has M=1 but config 'a' has M=3"),
    ("manifest-without-config", _edit_manifest(lambda m: m.pop("config")),
     r"fixture has M=None but config 'a' has M=3"),
]


@pytest.mark.parametrize("damage, expected", [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_fixture_is_detected(tmp_path: Path, matrix: Path, synthetic: Path,
                                     damage: Callable[[Path], object], expected: str) -> None:
    folder = tmp_path / "a"
    shutil.copytree(synthetic / "a", folder)
    config = _config(matrix, "a")
    verify_fixture(folder, config)  # the copy is sound
    damage(folder)
    with pytest.raises(FixtureError, match=expected):
        verify_fixture(folder, config)


def test_a_fixture_gives_its_stored_golden_and_none_for_an_input_it_does_not_carry(matrix: Path,
                                                                                  synthetic: Path) -> None:
    fixture = verify_fixture(synthetic / "a", _config(matrix, "a"))
    assert np.array_equal(fixture.golden("ramp"), np.load(synthetic / "a" / golden_file("ramp")))
    assert fixture.golden("not-an-input") is None


def test_fixture_of_another_shape_is_rejected(matrix: Path, synthetic: Path) -> None:
    """b's fixture (M=1) offered for a (M=3): its golden has the wrong shape, so it must not be trusted."""
    verify_fixture(synthetic / "b", _config(matrix, "b"))
    with pytest.raises(FixtureError, match=r"fixture has M=1 but config 'a' has M=3"):
        verify_fixture(synthetic / "b", _config(matrix, "a"))


def test_a_linear_fixture_keeps_the_key_it_had_before_dims(matrix: Path) -> None:
    """The fixture key hashes the op's dims at the top level: for a linear op the same M, K, N, group_size keys as
    before ops declared dims, so every cached linear fixture stays valid."""
    import hashlib

    from q4gsw.export.fixtures import FIXTURE_FORMAT, fixture_key, package_versions

    config = _config(matrix, "a")
    before = {"format": FIXTURE_FORMAT, "op": config.op, "M": 3, "K": 64, "N": 16, "group_size": 32,
              "weights": config.weights, "weight_seed": config.weight_seed, "inputs": list(config.inputs),
              "versions": package_versions()}
    assert fixture_key(config) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()


def test_a_manifest_written_before_dims_is_verified_by_its_top_level_dims(tmp_path: Path, matrix: Path,
                                                                          synthetic: Path) -> None:
    """A fixture cached before ops declared dims recorded M, K, N, group_size beside `weights` (its key is unchanged:
    a linear's dims are the same names), so the cache stays valid, and another shape is still refused."""
    folder = tmp_path / "a"
    shutil.copytree(synthetic / "a", folder)
    _edit_manifest(lambda m: m.update(config={**m["config"].pop("dims"), **m["config"]}))(folder)
    assert "dims" not in json.loads((folder / MANIFEST).read_text())["config"]
    verify_fixture(folder, _config(matrix, "a"))
    _edit_manifest(lambda m: m["config"].update(M=1))(folder)
    with pytest.raises(FixtureError, match=r"fixture has M=1 but config 'a' has M=3"):
        verify_fixture(folder, _config(matrix, "a"))


@pytest.mark.e2e
def test_exported_fixture_passes_the_same_checks(matrix: Path, fault_fixtures: Path) -> None:
    """The checks above run on synthetic fixtures; a real export's fixture (torch) passes them too."""
    manifest = verify_fixture(fault_fixtures / "a", _config(matrix, "a")).manifest
    assert manifest["operator"] == "et_vk.linear_q4gsw.default" and manifest["cross_checked"]
    with pytest.raises(FixtureError, match=r"fixture has M=1 but config 'a' has M=3"):
        verify_fixture(fault_fixtures / "b", _config(matrix, "a"))


@pytest.mark.e2e
def test_corrupt_explicit_fixture_fails_that_config_only(tmp_path: Path, matrix: Path, fault_fixtures: Path,
                                                         swiftshader_icd: dict) -> None:
    fixtures = tmp_path / "fixtures"
    shutil.copytree(fault_fixtures, fixtures)
    _truncate(fixtures / "a" / WEIGHT_FILE)
    size = (fixtures / "a" / WEIGHT_FILE).stat().st_size
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(fixtures),
                   "--config", "a", "--config", "b", "--results", str(tmp_path / "r"), env=swiftshader_icd,
                   timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    results = {r["config"]: r for r in json.loads((tmp_path / "r" / "results.json").read_text())["results"]}
    assert results["a"]["status"] == "fail"
    assert results["a"]["message"] == (
        f"fixture for 'a' rejected: {fixtures}/a/{WEIGHT_FILE}: size {size} != {2 * size} in {MANIFEST} "
        f"(truncated?). Re-export it with `python -m q4gsw export --out {fixtures} --config a`")
    assert results["b"]["status"] == "pass"
    assert (fixtures / "a" / WEIGHT_FILE).stat().st_size == size  # an explicit fixture is never rebuilt
    assert "export a:" not in done.stdout


@pytest.mark.e2e
def test_corrupt_cached_fixture_is_rebuilt_and_says_so(tmp_path: Path, matrix: Path, fault_fixtures: Path,
                                                       swiftshader_icd: dict) -> None:
    cache = tmp_path / "cache"
    destination = fixture_dir(cache, _config(matrix, "a"))
    shutil.copytree(fault_fixtures / "a", destination)
    _flip_byte(destination / WEIGHT_FILE)
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--config", "a", "--cache", str(cache),
                   "--results", str(tmp_path / "r"), env=swiftshader_icd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"cached fixture rejected, rebuilding: {destination}/{WEIGHT_FILE}: sha256 does not match {MANIFEST} "
            "(corrupted)") in done.stdout
    assert "export a: quantize + torch.export + Vulkan lowering" in done.stdout
    verify_fixture(destination, _config(matrix, "a"))
    assert sorted(p.name for p in cache.iterdir()) == [destination.name, destination.name + ".lock"]


@pytest.mark.e2e
def test_concurrent_exports_share_one_cache(tmp_path: Path, matrix: Path) -> None:
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "q4gsw", "_export", "--matrix", str(matrix), "--config", "b", "--cache",
               str(cache)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    exported = [out for out, _ in outputs if "export b: quantize" in out]
    assert len(exported) == 1  # the second waited on the lock and took the first one's verified fixture
    destination = fixture_dir(cache, _config(matrix, "b"))
    verify_fixture(destination, _config(matrix, "b"))
    assert sorted(p.name for p in cache.iterdir()) == [destination.name, destination.name + ".lock"]


@pytest.mark.e2e
def test_kill_9_during_export_leaves_nothing_trusted(tmp_path: Path, matrix: Path, swiftshader_icd: dict) -> None:
    cache = tmp_path / "cache"
    config = _config(matrix, "a")
    destination = fixture_dir(cache, config)
    proc = subprocess.Popen([sys.executable, "-m", "q4gsw", "_export", "--matrix", str(matrix), "--config", "a",
                             "--cache", str(cache)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO, start_new_session=True)
    temporary = cache / f".tmp-{destination.name}-{proc.pid}"
    try:
        deadline = time.monotonic() + 60
        while not temporary.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert temporary.exists(), "the export never started its temporary directory"
        time.sleep(2)  # well inside torch.export / lowering
        assert proc.poll() is None, "export finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not destination.exists()  # nothing was renamed into place
    assert temporary.exists()
    with pytest.raises(FixtureError, match=r"no manifest\.json"):
        verify_fixture(temporary, config)

    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--config", "a", "--cache", str(cache),
                   "--results", str(tmp_path / "r"), env=swiftshader_icd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removing {temporary.name}, left by an interrupted export" in done.stdout
    assert "export a: quantize + torch.export + Vulkan lowering" in done.stdout
    assert not temporary.exists()
    verify_fixture(destination, config)
    assert sorted(p.name for p in cache.iterdir()) == [destination.name, destination.name + ".lock"]


# ------------------------------------------------------------------------------------------------
# Two runs on one fresh cache (issue 14)
# ------------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_two_runs_on_a_fresh_cache_started_together_both_succeed(tmp_path: Path) -> None:
    """Both provision SwiftShader (download + unpack) and export the fixture into the same fresh cache: the file
    locks make the second wait and take the first one's work."""
    matrix = write_matrix(tmp_path / "matrix.toml", configs="b")
    cache = tmp_path / "fresh-cache"
    env = {k: v for k, v in os.environ.items() if k not in ("Q4GSW_SWIFTSHADER_ICD", "VK_ICD_FILENAMES")}
    env["Q4GSW_CACHE"] = str(cache)
    procs = [subprocess.Popen([sys.executable, "-m", "q4gsw", "run", "--matrix", str(matrix), "--backend",
                               "swiftshader", "--results", str(tmp_path / f"r{i}")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    if "apt-get download chromium-common` failed" in "".join(outputs) and not os.environ.get("CI"):
        pytest.skip("SwiftShader cannot be downloaded here")
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("provisioning SwiftShader" in out for out in outputs) == 1, outputs  # the second waited and reused
    assert sum("export b: quantize" in out for out in outputs) == 1, outputs
    for i in range(2):
        assert [r["status"] for r in results_of(tmp_path / f"r{i}")["b"]] == ["pass"]
    leftovers = [p.name for p in (cache / "swiftshader").iterdir() if p.name.startswith(".download-")]
    assert leftovers == []
