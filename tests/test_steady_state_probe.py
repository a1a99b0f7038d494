"""scripts/steady_state_probe.py (a benchmark, not a test) on lavapipe: the three phases of each kernel are timed,
back-to-back passes come one sample each (Device.run's batch), and the kernel's output matches the fp64 golden."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "steady_state_probe.py"


@pytest.mark.e2e
def test_the_probe_times_idle_back_to_back_and_warm_phases(lavapipe_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--backend", "lavapipe", "--shape", "1x256x512",
                           "--kernels", "gpu_gemv", "--idle-s", "0", "--isolated", "3", "--sustain-s", "0.2",
                           "--batch", "7", "--variant", "few:dispatch=2",
                           "--variant", f"file:file={REPO / 'q4gsw/ops/linear_q4gsw/kernels/gpu_gemv.wgsl'}",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row, variant, from_file = json.loads(out.read_text())["rows"]
    assert row["kernel"] == "gpu_gemv" and row["status"] == "pass" and row["max_rel_err"] < 1e-5
    # The same kernel on 2 grid-strided workgroups: still the golden's result.
    assert variant["kernel"] == "gpu_gemv[few]" and variant["workgroups"] == [2, 1, 1] and variant["max_rel_err"] < 1e-5
    assert from_file["kernel"] == "gpu_gemv[file]" and from_file["max_rel_err"] < 1e-5
    assert row["isolated_after_idle"]["n"] == 3 and row["isolated_after_load"]["n"] == 3
    busy = row["back_to_back"]
    assert busy["n"] >= 7  # at least one full batch, a sample per pass
    assert 0 < busy["best_ms"] <= busy["median_ms"]
    assert "gpu_gemv" in done.stdout and "back-to-back" in done.stdout


def test_the_probe_refuses_kernels_that_do_not_apply() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--backend", "lavapipe", "--shape", "64x256x512",
                           "--kernels", "gpu_gemv"], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode != 0 and "none of ['gpu_gemv'] applies to 64x256x512" in done.stderr


def test_a_variant_is_a_label_and_keys() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("steady_state_probe", SCRIPT)
    assert spec and spec.loader
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe.parse_variant("p528:dispatch=528,rpt=2") == ("p528", {"rpt": "2"}, "528", None)
    assert probe.parse_variant("v4:file=k.wgsl") == ("v4", {}, None, "k.wgsl")
    for bad in ("nolabel", ":rpt=2", "x:rpt"):
        with pytest.raises(SystemExit, match="write LABEL:key=value"):
            probe.parse_variant(bad)
