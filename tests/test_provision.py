"""Provisioning a backend's driver (q4gsw.webgpu.provision): a backend that cannot be provisioned fails the
required configs with the reason, before any adapter is touched (offline: fixtures written with numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import run_cli, write_fault_matrix
from helpers import only, random_packed, results_json, write_fixture

from q4gsw.matrix.load import load_matrix


def test_backend_that_cannot_be_provisioned_fails_required_configs(tmp_path: Path) -> None:
    """Offline: provisioning fails before any adapter is touched (fixtures written with numpy)."""
    matrix = write_fault_matrix(tmp_path / "matrix.toml")
    loaded = load_matrix(matrix)
    fixtures = tmp_path / "fixtures"
    for name in "ab":
        config = loaded.config(name)
        d = config.dims
        write_fixture(fixtures, config, random_packed(d["N"], d["K"], d["group_size"], np.random.default_rng(8)))
    missing = tmp_path / "no-such-icd.json"
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(fixtures),
                   "--results", str(tmp_path / "r"), env={"Q4GSW_SWIFTSHADER_ICD": str(missing)}, timeout=120)
    assert done.returncode == 1
    _, results = results_json(tmp_path / "r")
    assert [only(results[c])["status"] for c in "abh"] == ["fail", "fail", "skip"]
    assert only(results["a"])["message"] == (
        f"backend 'swiftshader' unavailable: Q4GSW_SWIFTSHADER_ICD={missing} does not exist: point it at a "
        "vk_swiftshader_icd.json whose library_path is an absolute path")

