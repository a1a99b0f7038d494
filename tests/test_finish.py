"""The finish of a command-line run (q4gsw.run.finish): Ctrl-C or SIGTERM to the run's process group stops it
cleanly, with exit 130, the partial results written and no child left running (SwiftShader, real subprocesses)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import FAULT_DISPATCH, REPO, write_fault_matrix
from helpers import only, results_json


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_cleanly_with_partial_results(tmp_path: Path, swiftshader_icd: dict, fault_fixtures: Path,
                                                      signum: signal.Signals) -> None:
    """b (M=1) passes, then a (M=3) hangs in its kernel; the signal goes to the run's whole process group (as Ctrl-C
    in a terminal does). The children run in their own sessions, so the parent must kill them itself."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(fault_fixtures, fixtures)
    matrix = write_fault_matrix(tmp_path / "matrix.toml", order="bah", gemm_kernel="tests/data/hang.wgsl",
                                gemm_dispatch=FAULT_DISPATCH)
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "q4gsw", "run", "--matrix", str(matrix), "--backend",
                             "swiftshader", "--fixtures", str(fixtures), "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, **swiftshader_icd}, start_new_session=True,
                            # even if this pytest was started with SIGINT ignored (a background job of a script)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "(2/2) a " in line:  # b is done; a's child is starting
                break
        deadline = time.monotonic() + 60
        while not any("_child" in " ".join(c.cmdline()) for c in psutil.Process(proc.pid).children(recursive=True)):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            time.sleep(0.1)
        time.sleep(5)  # the child imports wgpu, opens SwiftShader and is then spinning in a's kernel
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "".join(seen)
        os.killpg(proc.pid, signum)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output
    assert "interrupted: writing the partial results" in output
    payload, by_config = results_json(results)
    assert payload["interrupted"] is True
    assert only(by_config["b"])["status"] == "pass"
    assert only(by_config["a"]) == {**only(by_config["a"]), "status": "skip",
                                     "message": "not run: the run was interrupted"}
    assert only(by_config["h"])["status"] == "skip"
    alive = psutil.wait_procs(children, timeout=10)[1]
    assert alive == [], f"children left running: {alive}"

