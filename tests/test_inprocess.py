"""`run --in-process` (q4gsw.run.inprocess): the selected cases in the calling process, with a normal run's
results, reports and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.mark.e2e
def test_a_run_in_process_gives_a_normal_runs_results(lavapipe_env: dict[str, str], fixture_cache: Path,
                                                      tmp_path: Path):
    done = run_cli("run", "--in-process", "--backend", "lavapipe", "--config", "kv_proj",
                   "--results", str(tmp_path / "r"), env={"Q4GSW_CACHE": str(fixture_cache)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads((tmp_path / "r" / "results.json").read_text())
    mine = [r for r in payload["results"] if r["config"] == "kv_proj"]
    assert mine and all(r["status"] == "pass" for r in mine)
    assert all(r["timings"]["total_s"] and r["adapter"]["name"] for r in mine)
    assert (tmp_path / "r" / "junit.xml").is_file() and (tmp_path / "r" / "summary.md").is_file()
    # nothing ran in a child: no export process, no GPU child, no probe
    assert "READY" not in done.stdout and "_child" not in done.stdout + done.stderr
