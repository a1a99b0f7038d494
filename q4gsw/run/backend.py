"""The backend's stages: provision its Vulkan ICD, find its adapter (probe), and route kernel sets with the
adapter's real features and limits. A backend that cannot be provisioned or found fails every selected config
with why (a required config never turns into a skip)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from q4gsw.cases import Selection, adapter_from_plain, to_plain
from q4gsw.console import last_lines as _last_lines
from q4gsw.console import say
from q4gsw.matrix.values import AdapterInfo
from q4gsw.report.result import Result
from q4gsw.run.procs import child_env
from q4gsw.run.records import config_failure, skip_result
from q4gsw.run.workers import PROBE_TIMEOUT_S

Probe = Callable[[Selection, dict[str, str]], AdapterInfo]


def probe(selection: Selection, env: dict[str, str]) -> AdapterInfo:
    """Find the backend's adapter in a child (the ICD env must be set before wgpu loads); raise if absent."""
    from q4gsw.webgpu.adapter import BackendUnavailable

    backend = selection.backend
    command = [sys.executable, "-m", "q4gsw", "_probe", "--backend-json", json.dumps(to_plain(backend))]
    try:
        proc = subprocess.run(command, env=child_env(env), capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BackendUnavailable(f"enumerating adapters hung for {PROBE_TIMEOUT_S} s (driver problem?)") from exc
    if proc.returncode != 0:
        raise BackendUnavailable(_last_lines(proc.stderr, 1).removeprefix("error: "))
    return adapter_from_plain(json.loads(proc.stdout.strip().splitlines()[-1]))


def probe_in_process(selection: Selection, env: dict[str, str]) -> AdapterInfo:
    """`run --in-process`: the ICD's variables go into this process's environment before wgpu loads here."""
    from q4gsw.webgpu import adapter

    os.environ.update(env)
    return adapter.select_adapter(selection.backend)[1]


def open_backend(selection: Selection, record: Callable[[Result], None],
                 find: Probe = probe) -> tuple[dict[str, str], Selection] | None:
    """Provision and probe the backend, then route: (the children's environment: the ICD's, routed
    selection), or None when the backend is unavailable (every selected config then fails with why)."""
    from q4gsw.webgpu.adapter import BackendUnavailable
    from q4gsw.webgpu.provision import provision

    backend = selection.backend
    try:
        env = provision(backend)
        adapter = find(selection, env)
    except BackendUnavailable as exc:
        say(f"error: backend '{backend.name}' unavailable: {exc}")
        for config in selection.configs:
            record(config_failure(config, selection, f"backend '{backend.name}' unavailable: {exc}",
                                  selection.cases_of(config)))
        return None
    say(f"backend {backend.name}: {adapter.describe()}")
    if selection.route:
        before = len(selection.skipped)
        selection = selection.routed(adapter)
        for skip in selection.skipped[before:]:
            record(skip_result(skip, selection))
        for config in selection.configs:
            routed = next((c.routed for c in selection.cases_of(config)), "")
            if routed:
                say(f"route: {config.name} -> {routed}")
    return env, selection
