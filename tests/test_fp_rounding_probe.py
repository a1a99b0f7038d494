"""scripts/fp_rounding_probe.py: its numpy rounding models (offline, against identities worked out by hand) and one
run on lavapipe, whose compiler neither contracts nor folds (e2e): every typical output of embedding's
offset_folded mutant is the two-rounding model's, fp16_output and quantizeToF16 are the f16 model's."""

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

SCRIPT = REPO / "scripts" / "fp_rounding_probe.py"


def _probe():
    spec = importlib.util.spec_from_file_location("fp_rounding_probe", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_models_by_hand():
    probe = _probe()
    n = np.arange(16, dtype=np.uint32)
    # s = 0.75: every product is exact in fp32, so all three fp32 models agree; f16 holds (n - 8) * 0.75 exactly.
    exact = probe.models(n, np.full(16, 0.75, dtype=np.float32))
    expected = (np.arange(16) - 8) * 0.75
    for name in ("reference", "separate", "fma", "f16", "f16 ftz"):
        assert np.array_equal(exact[name], expected), name
    # s = 0.1f: n = 9 -> 9 * 0.1f rounds up to 0.90000004 (fp32), minus 0.8f = 0.100000024, not 0.1f (q = 1).
    s = np.float32(0.1)
    rounded = probe.models(np.array([9], dtype=np.uint32), np.array([s]))
    assert rounded["reference"][0] == s and rounded["fma"][0] == s
    assert rounded["separate"][0] == np.float32(0.100000024)
    assert rounded["f16"][0] == np.float32(0.0999755859375)  # 0.1's nearest f16: 1638 / 2^14
    # 8 s overflows: the fma form gives -inf; the reference, with q = 1, is s itself.
    huge = probe.models(np.array([9], dtype=np.uint32), np.array([np.float32(4.5e37)]))
    assert huge["fma"][0] == -np.inf and huge["reference"][0] == np.float32(4.5e37)


def test_classify_counts_bit_equal_outputs_and_nan_as_equal():
    probe = _probe()
    got = np.float32([1.0, np.nan, -0.0])
    counts = probe.classify(got, {"a": np.float32([1.0, np.nan, 0.0]), "b": np.float32([2.0, 0.0, -0.0])})
    assert counts == {"a": 2, "b": 1}  # -0.0 and 0.0 differ bit for bit


@pytest.mark.e2e
def test_lavapipe_rounds_the_mutants_as_written(lavapipe_env: dict[str, str], tmp_path: Path):
    out = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--backend", "lavapipe", "--json", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **lavapipe_env, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    typical = json.loads(out.read_text())["classes"]["typical"]
    total, matches = typical["outputs"], typical["matches"]
    assert total == 4096 and matches["reference"]["reference"] == total
    assert matches["offset_folded"]["separate"] == total and matches["offset_folded"]["reference"] < total
    assert matches["fp16_output"]["f16"] == total and matches["quantize_f16"]["f16"] == total
