"""scripts/bandwidth_probe.py (a benchmark, not a test) on lavapipe: every row is timed, and the kernel's output
sum is the sum of the bound words, recomputed here with numpy from the probe's pattern (every element read)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "bandwidth_probe.py"


def _probe_module():
    spec = importlib.util.spec_from_file_location("bandwidth_probe", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_the_probe_times_every_variant_and_reads_every_element(lavapipe_env: dict[str, str], tmp_path: Path):
    out = tmp_path / "probe.json"
    # 64 workgroups: each invocation walks several vec4s, so the grid-stride loop itself is exercised.
    done = subprocess.run([sys.executable, str(SCRIPT), "--backend", "lavapipe", "--sizes-mib", "1", "2",
                           "--repeats", "2", "--workgroups", "64", "--flush-mib", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    probe = _probe_module()
    assert {(r["size_mib"], r["variant"]) for r in rows} == {(s, v) for s in (1, 2) for v in probe.VARIANTS}
    assert payload["adapter"]["name"] and payload["adapter"]["implementation"] == "wgpu-native"
    for row in rows:
        assert row["gbs"] > 0 and len(row["samples_s"]) >= 1, row
        assert sum(b["size"] for b in row["bindings"]) == row["bytes"] == row["size_mib"] * 2**20
        expected = sum(int(probe.pattern(b["offset"] // 4, b["size"] // 4, b["seed"]).sum(dtype=np.uint64))
                       for b in row["bindings"]) & 0xFFFFFFFF
        assert row["gpu_checksum"] == expected, row["variant"]
    offset = next(r for r in rows if r["variant"] == "offset" and r["size_mib"] == 2)
    assert offset["bindings"][0]["offset"] == 2 * 2**20  # the second half of the 2*S buffer
