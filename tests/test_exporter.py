"""Where a run's fixtures come from (q4gsw.run.exporter): an export that fails fails each required config with
the reason, and the export process goes on to the next config (SwiftShader, real subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli, write_fault_matrix
from helpers import only, results_json


@pytest.mark.e2e
def test_failed_export_fails_required_configs(tmp_path: Path, swiftshader_icd: dict) -> None:
    """An export that fails (here: torch cannot be imported) fails each required config with the reason; the export
    process goes on to the next config. (A cache that cannot be used at all is a usage error before any work:
    tests/test_paths.py.)"""
    matrix = write_fault_matrix(tmp_path / "matrix.toml")
    broken = tmp_path / "broken-site" / "torch"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("torch is broken here (a test)")\n')
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--cache", str(tmp_path / "cache"),
                   "--results", str(tmp_path / "r"), env={**swiftshader_icd, "PYTHONPATH": str(broken.parent)},
                   timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    _, results = results_json(tmp_path / "r")
    assert [only(results[c])["status"] for c in "abh"] == ["fail", "fail", "skip"]
    for config in "ab":
        message = only(results[config])["message"]
        assert message == f"export of '{config}' failed: ImportError: torch is broken here (a test)", message

