"""scripts/steady_state_probe.py (a benchmark, not a test) on lavapipe: the three phases of each kernel are timed,
back-to-back passes come one sample each (Device.run's batch), and the kernel's output matches the fp64 golden."""

from __future__ import annotations

import contextlib
import importlib.util
import io
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


def probe_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The script's answer to a refusal, from its main() run in this process (its output captured, sys.argv and
    the environment restored): a child costs ~0.35 CPU s of imports, and these refusals come before any work."""
    spec = importlib.util.spec_from_file_location("steady_state_probe_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    out, err = io.StringIO(), io.StringIO()
    argv, environ = sys.argv, dict(os.environ)
    sys.argv = [str(SCRIPT), *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = probe.main()
            except SystemExit as exc:  # argparse's own usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess([str(SCRIPT), *args], code, out.getvalue(), err.getvalue())


GOOD = ("--backend", "lavapipe", "--shape", "1x256x512", "--kernels", "gpu_gemv")


@pytest.mark.parametrize("args, says", [
    (("--isolated", "0"), "key '--isolated': 0 is below 1 — pass --isolated 1 or more"),
    (("--batch", "0"), "key '--batch': 0 is below 1"),
    (("--idle-s", "nan"), "key '--idle-s': nan is not a number of seconds"),
    (("--op", "zzzz"), "key '--op': unknown op 'zzzz' — choose from "),
    (("--backend", "lavapip"), "backend 'lavapip': key 'backend': no such backend — did you mean 'lavapipe'?"),
    (("--variant", "v:file=/nope/k.wgsl"), "key '--variant': 'v:file=/nope/k.wgsl': file '/nope/k.wgsl' does not "
                                           "exist"),
    (("--variant", "rpt"), "key '--variant': 'rpt' is not LABEL:key=value — write LABEL:key=value"),
    (("--shape", "1x100x64"), "1x100x64 gs=32 for op linear_q4gsw: K=100 is not a multiple of group_size=32"),
    (("--kernels", "nope"), "key '--kernels': 'nope' is no kernel of op linear_q4gsw in "),
    (("--kernels", "gpu_gemv_fst"), "did you mean 'gpu_gemv_fast'?"),
    (("--shape", "64x256x512"), "key '--kernels': none of ['gpu_gemv'] applies to 64x256x512 on lavapipe"),
    (("--torch", "--op", "linear_qcs4w", "--kernels", "qcs4w_reference"), "key '--torch': times torch's int4 linear"),
], ids=["isolated-0", "batch-0", "idle-nan", "unknown-op", "unknown-backend", "missing-variant-file",
        "variant-without-keys", "K-not-whole-groups", "unknown-kernel", "kernel-typo", "kernel-does-not-apply",
        "torch-for-another-op"])
def test_the_probe_checks_its_arguments_first(args: tuple[str, ...], says: str, tmp_path: Path) -> None:
    """Issue 29: each mistake is one line, exit 2, before any work (no device opened, nothing written); the raw
    Skip dataclass and the tracebacks (KeyError, FileNotFoundError, numpy broadcast) are gone."""
    done = probe_in_process(*GOOD, "--json", str(tmp_path / "probe.json"), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], done.stderr
    assert not (tmp_path / "probe.json").exists()


def test_the_probe_refuses_a_json_path_it_cannot_write_before_any_work(tmp_path: Path) -> None:
    done = probe_in_process(*GOOD, "--json", str(tmp_path))  # a folder: the phases would be lost at the end
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "key '--json'" in done.stderr and "is a folder" in done.stderr


def test_a_variant_is_a_label_and_keys() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("steady_state_probe", SCRIPT)
    assert spec and spec.loader
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe.parse_variant("p528:dispatch=528,rpt=2") == ("p528", {"rpt": "2"}, "528", None)
    assert probe.parse_variant("v4:file=k.wgsl") == ("v4", {}, None, "k.wgsl")
    for bad in ("nolabel", ":rpt=2", "x:rpt"):
        with pytest.raises(probe.ProbeUsage, match="write LABEL:key=value"):
            probe.parse_variant(bad)
