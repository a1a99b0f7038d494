"""`run --in-process` (q4gsw.run.inprocess): the selected cases in the calling process, with a normal run's
results, reports and exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from helpers import TEST_TOLERANCE, make_config

from q4gsw.case import base_result
from q4gsw.cases import Case, Selection
from q4gsw.matrix.load import Backend, make_kernel
from q4gsw.matrix.values import AdapterInfo
from q4gsw.run.exporter import FixtureSource
from q4gsw.run.inprocess import execute_in_process
from q4gsw.run.options import RunOptions


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


def test_configs_needing_the_same_features_share_one_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An in-process run opens one device per feature set, not one per config: a pipeline is then compiled once per
    run (SwiftShader spends ~10 CPU s on some kernels). A config whose kernels need other features gets its own
    device, with exactly those (the adapter's features the kernels do not ask for stay off, as in a child)."""
    import q4gsw.run.inprocess as inprocess
    import q4gsw.webgpu.adapter as adapter
    import q4gsw.webgpu.execute as execute

    info = AdapterInfo(name="Fake GPU", device_type="DiscreteGPU", api="Vulkan", webgpu="wgpu-native",
                       features=("shader-f16", "subgroup"))
    opened: list[tuple[str, ...]] = []

    class FakeDevice:
        def __init__(self, adapter: Any, info: AdapterInfo, features: tuple[str, ...] = ()) -> None:
            opened.append(features)

    used: dict[str, object] = {}

    def fake_execute_config(cases, fixture, seed, root, repeats=1, opened=None, warmup_s=None):
        used[cases[0].config.name] = opened[0]
        yield from (base_result(c, "pass", "") for c in cases)

    monkeypatch.setattr(adapter, "select_adapter", lambda backend: (object(), info))
    monkeypatch.setattr(execute, "Device", FakeDevice)
    monkeypatch.setattr(inprocess, "execute_config", fake_execute_config)
    backend = Backend(name="fake", description="", api="Vulkan", adapter_name="Fake", device_type="DiscreteGPU",
                      provision="native")
    plain = make_kernel("plain", "plain.wgsl", "1", text="// fake\n")
    subgroup = make_kernel("sub", "sub.wgsl", "1", requires_features=("subgroup",), text="// fake\n")
    configs = [make_config(name, 1, 64, 8, 32) for name in ("a", "b", "c")]
    cases = tuple(Case(configs[i], kernel, "ramp", backend, TEST_TOLERANCE)
                  for i, kernel in ((0, subgroup), (0, plain), (1, subgroup), (2, plain)))
    recorded = []
    execute_in_process(Selection(backend=backend, configs=tuple(configs), cases=cases), configs,
                       lambda config: (tmp_path, "", 0.0),
                       RunOptions(fixtures=FixtureSource(tmp_path, tmp_path, tmp_path / "matrix.toml"),
                                  in_process=True),
                       tmp_path, recorded.append)
    assert opened == [("subgroup",), ()]
    assert used["a"] is used["b"] and used["c"] is not used["a"]
    assert [r.status for r in recorded] == ["pass"] * 4
