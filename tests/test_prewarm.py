"""The cold-start machinery (q4gsw.run.prewarm): the Q4GSW_PREWARM switch, the child policy it gives, and the
bytecode compiled ahead for a run's children (its plan, the helper, its place in the run)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from q4gsw.run import prewarm


def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, with_torch: bool = True,
              numpy_compiled: bool = False) -> Path:
    """site-packages with numpy (and torch) folders holding one module each; find_spec pointed at it."""
    site = tmp_path / "site"
    names = ["numpy", "numpy/_core", "wgpu"] + (["torch", "torch/_dynamo", "executorch/exir"] if with_torch else [])
    for name in names:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(f"NAME = {name!r}\n")
    if numpy_compiled:
        compiled = Path(importlib.util.cache_from_source(str(site / "numpy" / "__init__.py")))
        compiled.parent.mkdir()
        compiled.write_bytes(b"")
    monkeypatch.setattr(prewarm, "_package_folder",
                        lambda name: site / name if (site / name / "__init__.py").is_file() else None)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    return site


def test_nothing_to_do_where_the_packages_already_have_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake_site(tmp_path, monkeypatch, numpy_compiled=True)
    assert prewarm.plan(tmp_path / "cache", exporting=True) is None
    assert not (tmp_path / "cache").exists()


def test_a_prefix_set_by_the_user_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake_site(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "theirs"))
    assert prewarm.plan(tmp_path / "cache", exporting=True) is None


def test_no_bytecode_beside_the_sources_when_the_environment_forbids_it(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    site = fake_site(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    recorded = tmp_path / "export_imports.txt"  # as scripts/record-export-imports.py writes it
    recorded.write_text("# the last-imported first\nexecutorch/exir\ntorch/_dynamo\nnot/installed\n\ntorch\n")
    monkeypatch.setattr(prewarm, "EXPORT_IMPORTS", recorded)
    ahead = prewarm.plan(tmp_path / "cache", exporting=True)
    assert ahead is not None
    assert ahead.prefix == str(tmp_path / "cache" / "bytecode") and Path(ahead.prefix).is_dir()
    assert ahead.child_env() == {prewarm.PREFIX_ENV: ahead.prefix}
    # The export's folders first (the GPU work waits for its first fixture), in the recorded order, only
    # those that exist and only their own files ("/*"); then what every child imports; q4gsw itself last.
    folders = [Path(f) for f in ahead.folders]
    assert folders == [site / "executorch/exir/*", site / "torch/_dynamo/*", site / "torch/*", site / "numpy/_core",
                       site / "numpy/*", site / "wgpu", Path(prewarm.__file__).parent.parent]


def test_the_shipped_export_list_names_folders_of_the_pinned_packages():
    folders = prewarm.export_folders()
    assert len(folders) > 100 and all(f.endswith("/*") and not f.startswith("/") for f in folders)
    assert {f.split("/")[0] for f in folders} >= {"torch", "torchao", "executorch"}
    # The last-imported first: the partitioner's folders before torch's own, which everything imports first.
    assert folders.index("executorch/backends/vulkan/*") < folders.index("torch/*")


def test_export_folders_only_when_a_fixture_must_be_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = fake_site(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    ahead = prewarm.plan(tmp_path / "cache", exporting=False)
    assert ahead is not None and ahead.prefix == "" and ahead.child_env() == {}
    assert not any(str(site / "torch") in f or "executorch" in f for f in ahead.folders)
    site = fake_site(tmp_path / "bare", monkeypatch, with_torch=False)
    ahead = prewarm.plan(tmp_path / "cache", exporting=True)  # `--fixtures` sessions install no torch
    assert ahead is not None
    assert not any(f.startswith((str(site / "torch"), str(site / "executorch"))) for f in ahead.folders)


def test_an_unusable_cache_means_no_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake_site(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / "cache").write_text("a file, not a folder")
    assert prewarm.plan(tmp_path / "cache", exporting=True) is None


def test_warm_main_compiles_into_the_prefix_only(tmp_path: Path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for module in (package / "a.py", package / "sub" / "b.py"):
        module.write_text("VALUE = 1\n")
    prefix = tmp_path / "prefix"
    before = sys.pycache_prefix
    try:
        assert prewarm.warm_main(str(prefix), [f"{package}/*"]) == 0
        compiled = {p.relative_to(prefix) for p in prefix.rglob("*.pyc")}
        assert [p.name.split(".")[0] for p in compiled] == ["a"]  # "/*": not sub/b.py
        assert prewarm.warm_main(str(prefix), [str(package)]) == 0
        assert sorted(p.name.split(".")[0] for p in prefix.rglob("*.pyc")) == ["a", "b"]
    finally:
        sys.pycache_prefix = before
    assert not list(package.rglob("__pycache__"))  # nothing beside the sources


def test_the_run_starts_the_helper_its_children_read_it_and_it_ends_with_the_run(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "pkg"
    package.mkdir()
    for i in range(400):  # enough that the helper is still compiling when the run ends
        (package / f"m{i}.py").write_text("".join(f"def f{j}(x):\n    return x + {j}\n" for j in range(300)))
    ahead = prewarm.BytecodePlan(prefix=str(tmp_path / "prefix"), folders=(str(package),))
    monkeypatch.setattr(prewarm, "plan", lambda cache_root, exporting: ahead)
    monkeypatch.delenv(prewarm.PREFIX_ENV, raising=False)
    with prewarm.bytecode_ahead(exporting=True, anything_to_run=True) as (first_fixture_in, children_env):
        assert children_env == {prewarm.PREFIX_ENV: ahead.prefix}
        assert prewarm.PREFIX_ENV not in os.environ  # runs in threads of one process share it: left alone
        helpers = [p for p in psutil.Process().children() if "_warm" in p.cmdline()]
        assert len(helpers) == 1 and helpers[0].nice() == prewarm.WARM_NICE
        first_fixture_in()
        assert helpers[0].nice() == prewarm.IDLE_NICE
        deadline = time.monotonic() + 30
        while not (tmp_path / "prefix").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "prefix").exists()
    assert not helpers[0].is_running() or helpers[0].status() == psutil.STATUS_ZOMBIE


def test_the_standard_librarys_own_bytecode_is_read_through_the_prefix(tmp_path: Path):
    import fractions

    prefix = tmp_path / "prefix"
    if not Path(importlib.util.cache_from_source(fractions.__file__)).is_file():
        pytest.skip("this Python's standard library has no bytecode to link")
    assert prewarm.link_standard_library(str(prefix)) > 100
    tag = sys.implementation.cache_tag
    mirrored = prefix.joinpath(*Path(fractions.__file__).parent.parts[1:], f"fractions.{tag}.pyc")
    assert mirrored.is_symlink() and mirrored.resolve() == Path(importlib.util.cache_from_source(fractions.__file__))
    assert prewarm.link_standard_library(str(prefix)) == 0  # a later run finds them linked
    # A child with the prefix and PYTHONDONTWRITEBYTECODE reads it instead of compiling the module again.
    proc = subprocess.run([sys.executable, "-v", "-c", "import fractions"], capture_output=True, text=True,
                          env={**os.environ, prewarm.PREFIX_ENV: str(prefix), "PYTHONDONTWRITEBYTECODE": "1"})
    assert f"# code object from '{mirrored}'" in proc.stderr


# ------------------------------------------------------------------------------------------------
# The Q4GSW_PREWARM switch
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, on", [
    (None, {"spares", "nice", "bytecode"}),
    ("1", {"spares", "nice", "bytecode"}),
    ("0", set()),
    ("", set()),
    (" , ", set()),
    ("spares", {"spares"}),
    ("nice, bytecode", {"nice", "bytecode"}),
    ("spares,nice,bytecode", {"spares", "nice", "bytecode"}),
])
def test_the_switch_names_the_mechanisms_left_on(text: str | None, on: set[str]):
    switch = prewarm.parse_switch(text)
    assert {name for name in prewarm.MECHANISMS if getattr(switch, name)} == on


@pytest.mark.parametrize("text", ["2", "spare", "spares,bogus", "all"])
def test_an_unknown_mechanism_is_an_error_naming_the_variable(text: str):
    with pytest.raises(prewarm.PrewarmSwitchError) as raised:
        prewarm.parse_switch(text)
    assert str(raised.value).startswith(f"Q4GSW_PREWARM={text!r}") and "spares, nice, bytecode" in str(raised.value)


def test_the_policy_follows_the_switch_the_mode_and_whether_the_run_exports():
    everything = prewarm.Prewarm()
    assert everything.policy("check", exporting=True) == prewarm.ChildPolicy(prewarm.SPARES_AHEAD,
                                                                             prewarm.CHILD_NICE_WHILE_EXPORTING)
    assert everything.policy("check", exporting=False).nice == 0  # nothing to yield the CPU to
    assert everything.policy("bench", exporting=False).spares_ahead == prewarm.BENCH_SPARES_AHEAD == 1
    nothing = prewarm.parse_switch("0")
    assert nothing.policy("check", exporting=True) == prewarm.ChildPolicy(spares_ahead=0, nice=0)


def test_switched_off_nothing_is_started_and_prewarm_is_not_even_imported(tmp_path: Path):
    """Q4GSW_PREWARM=0: the prewarm stage leaves the run's defaults (no spares, no nice, no helper)."""
    script = """
import contextlib, sys
from pathlib import Path
from q4gsw.run import stages
from q4gsw.run.exporter import FixtureSource
from q4gsw.cases import Selection
from q4gsw.matrix import load_matrix
matrix = load_matrix(Path(sys.argv[1]))
options = stages.RunOptions(fixtures=FixtureSource(None, Path(sys.argv[2]), matrix.path))
with contextlib.ExitStack() as stack:
    state = stages.RunState(Selection(matrix.backend("swiftshader"), (), ()), options, Path("."), print, stack)
    state.exporting = True
    stages.start_prewarm(state)
    print(state.policy, state.extra_env, "q4gsw.run.prewarm" in sys.modules)
"""
    from helpers import MATRIX

    done = subprocess.run([sys.executable, "-c", script, str(MATRIX), str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "Q4GSW_PREWARM": "0"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ChildPolicy(spares_ahead=0, nice=0) {} False"


def test_without_spares_a_configs_child_starts_only_once_its_fixture_is_in(monkeypatch: pytest.MonkeyPatch):
    from helpers import MATRIX

    from q4gsw.cases import build_selection
    from q4gsw.matrix import load_matrix
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
