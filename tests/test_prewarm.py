"""The cold-start machinery (q4gsw.run.prewarm): the Q4GSW_PREWARM switch, the child policy it gives, and warm
spare children ahead of their fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from q4gsw.run import prewarm


@pytest.mark.parametrize("text, on", [
    (None, {"spares"}),
    ("1", {"spares"}),
    ("0", set()),
    ("", set()),
    (" , ", set()),
    ("spares", {"spares"}),
    (" spares, ", {"spares"}),
])
def test_the_switch_names_the_mechanisms_left_on(text: str | None, on: set[str]):
    switch = prewarm.parse_switch(text)
    assert {name for name in prewarm.MECHANISMS if getattr(switch, name)} == on


@pytest.mark.parametrize("text", ["2", "spare", "spares,bogus", "all", "nice", "bytecode"])
def test_an_unknown_mechanism_is_an_error_naming_the_variable(text: str):
    with pytest.raises(prewarm.PrewarmSwitchError) as raised:
        prewarm.parse_switch(text)
    assert str(raised.value).startswith(f"Q4GSW_PREWARM={text!r}") and "a comma list of spares" in str(raised.value)


def test_the_policy_follows_the_switch_and_the_mode():
    assert prewarm.Prewarm().policy("check") == prewarm.ChildPolicy(prewarm.SPARES_AHEAD)
    assert prewarm.Prewarm().policy("bench").spares_ahead == prewarm.BENCH_SPARES_AHEAD == 1
    assert prewarm.parse_switch("0").policy("check") == prewarm.ChildPolicy(spares_ahead=0)


def test_switched_off_nothing_is_started_and_prewarm_is_not_even_imported(tmp_path: Path):
    """Q4GSW_PREWARM=0: the prewarm stage leaves the run's defaults (no spares)."""
    script = """
import contextlib, sys
from pathlib import Path
from q4gsw.run import stages
from q4gsw.run.exporter import FixtureSource
from q4gsw.cases import Selection
from q4gsw.matrix.load import load_matrix
matrix = load_matrix(Path(sys.argv[1]))
options = stages.RunOptions(fixtures=FixtureSource(None, Path(sys.argv[2]), matrix.path))
with contextlib.ExitStack() as stack:
    state = stages.RunState(Selection(matrix.backend("swiftshader"), (), ()), options, Path("."), print, stack)
    state.exporting = True
    stages.start_prewarm(state)
    print(state.policy, "q4gsw.run.prewarm" in sys.modules)
"""
    from helpers import MATRIX

    done = subprocess.run([sys.executable, "-c", script, str(MATRIX), str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "Q4GSW_PREWARM": "0"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ChildPolicy(spares_ahead=0) False"


def test_without_spares_a_configs_child_starts_only_once_its_fixture_is_in(monkeypatch: pytest.MonkeyPatch):
    from helpers import MATRIX

    from q4gsw.cases import build_selection
    from q4gsw.matrix.load import load_matrix
    from q4gsw.run import children
    from q4gsw.run.exporter import FixtureSource
    from q4gsw.run.stages import RunOptions

    events: list[str] = []

    class FakeChild:
        def __init__(self, config, *args, **kwargs):
            self.config = config
            events.append(f"start {config.name}")

        def finish(self, fixture, rate=None):
            events.append(f"finish {self.config.name}")
            return []

        def cancel(self):
            events.append(f"cancel {self.config.name}")

    def fixture_for(config):
        events.append(f"fixture {config.name}")
        return Path("/fixture"), "", 0.0

    monkeypatch.setattr(children, "ConfigChild", FakeChild)
    selection = build_selection(load_matrix(MATRIX), "swiftshader", names=("q_proj", "kv_proj"))
    options = RunOptions(fixtures=FixtureSource(None, Path("/cache"), MATRIX))
    configs = list(selection.configs)
    children.execute_configs(selection, configs, fixture_for, {}, options, Path("."), lambda r: None,
                             prewarm.ChildPolicy(spares_ahead=0))
    assert events == ["fixture q_proj", "start q_proj", "finish q_proj",
                      "fixture kv_proj", "start kv_proj", "finish kv_proj"]
    events.clear()
    children.execute_configs(selection, configs, fixture_for, {}, options, Path("."), lambda r: None,
                             prewarm.ChildPolicy(spares_ahead=4))
    assert events == ["start q_proj", "fixture q_proj", "start kv_proj", "finish q_proj",  # a warm spare ahead
                      "fixture kv_proj", "finish kv_proj"]
