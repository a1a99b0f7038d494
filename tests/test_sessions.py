"""nox session names, defined once (q4gsw.sessions): what each tier and suite runs in, and the reproduce line."""

from __future__ import annotations

import ast
import shlex
import sys
from pathlib import Path

import pytest

from q4gsw import sessions

SOURCE = Path(sessions.__file__)


def test_accuracy_session_names():
    assert sessions.accuracy_session("swiftshader") == "accuracy-swiftshader"
    assert sessions.accuracy_session("lavapipe", "llama") == "accuracy-lavapipe"
    assert sessions.accuracy_session("native", "edges") == "accuracy-edges-native"


@pytest.mark.parametrize("backend, tier, suite, expected", [
    ("swiftshader", "required", "llama", ("accuracy-swiftshader", [])),
    ("native", "required", "edges", ("accuracy-edges-native", [])),
    ("lavapipe", "heavy", "llama", ("heavy", ["--backend", "lavapipe"])),
    ("lavapipe", "heavy", "dq8ca-llama", ("heavy", ["--backend", "lavapipe", "--suite", "dq8ca-llama"])),
])
def test_session_for(backend, tier, suite, expected):
    assert sessions.session_for(backend, tier, suite) == expected
    assert sessions.has_session(tier, suite)


@pytest.mark.parametrize("tier, suite", [("optional", "llama"), ("optional", "edges")])
def test_tiers_without_a_session(tier, suite):
    with pytest.raises(ValueError, match=f"no nox session runs tier '{tier}' of suite '{suite}'"):
        sessions.session_for("swiftshader", tier, suite)
    assert not sessions.has_session(tier, suite)


def test_heavy_hint_names_the_heavy_session():
    assert sessions.HEAVY_HINT == f"heavy: run `nox -s {sessions.HEAVY_SESSION}`" == "heavy: run `nox -s heavy`"


@pytest.mark.parametrize("args, expected", [
    (("q_proj", "swiftshader", "required", "llama"), "nox -s accuracy-swiftshader -- --config q_proj"),
    (("edge_gs8", "native", "required", "edges"), "nox -s accuracy-edges-native -- --config edge_gs8"),
    (("lm_head", "lavapipe", "heavy", "llama"), "nox -s heavy -- --backend lavapipe --config lm_head"),
    # no session runs it: the plain command
    (("odd", "swiftshader", "optional", "llama"), "python -m q4gsw run --backend swiftshader --config odd"),
])
def test_reproduce_command(args, expected):
    assert sessions.reproduce_command(*args) == expected


def test_reproduce_command_with_kernel_arguments_quotes_them():
    line = sessions.reproduce_command("q_proj", "swiftshader", "required", "llama",
                                      ["check", "--kernel", "my kernel.wgsl", "--dispatch", "ceil(N / 64), M"])
    assert shlex.split(line) == ["python", "-m", "q4gsw", "check", "--kernel", "my kernel.wgsl", "--dispatch",
                                 "ceil(N / 64), M", "--backend", "swiftshader", "--config", "q_proj"]


def test_standard_library_only():
    """noxfile.py imports this module before q4gsw is installed anywhere."""
    imported = set()
    for node in ast.walk(ast.parse(SOURCE.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_executorch_runs_the_default_suite_and_every_suite_of_the_other_ops_with_a_kernel_set():
    data = {"config": [{"name": "a", "suite": "llama"}, {"name": "b", "suite": "edges"},
                       {"name": "c", "op": "linear_qcs4w", "suite": "qcs4w-llama"},
                       {"name": "d", "op": "linear_qcs4w", "suite": "qcs4w-edges"}, {"name": "e"},
                       {"name": "f", "op": "scale_rows", "suite": "scale"}],
            "kernel_set": {"q4gsw": {}, "qcs4w": {"op": "linear_qcs4w"}}}
    # scale_rows has no kernel set: ExecuTorch has no kernels of it, so the executorch session does not run it.
    assert sessions.executorch_suites(data) == ["llama", "qcs4w-llama", "qcs4w-edges"]
    assert sessions.matrix_suites(data) == ["llama", "edges", "qcs4w-llama", "qcs4w-edges", "scale"]


def test_every_session_that_runs_the_matrix_writes_results_under_its_own_name(monkeypatch, tmp_path):
    """README and docs/results.md: the nox sessions write to results/<session>/. The per-suite sessions
    (accuracy-<suite>-<backend>) wrote to results/<suite>-<backend>/ (issue 29)."""
    import importlib.util
    from types import SimpleNamespace

    pytest.importorskip("nox")
    from nox import registry

    monkeypatch.setattr(registry, "_REGISTRY", {})  # only noxfile.py's sessions, and none left behind
    spec = importlib.util.spec_from_file_location("q4gsw_noxfile_sessions", SOURCE.parent.parent / "noxfile.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    written = {}

    class SessionError(Exception):
        pass

    def error(*args: object) -> None:
        raise SessionError(*args)

    # The versions-* sessions run from the shared export (results/versions-fixtures, relative to nox's folder).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "versions-fixtures").mkdir(parents=True)
    for name, func in registry.get().items():
        calls: list[tuple[str, ...]] = []
        fake = SimpleNamespace(posargs=[], venv_backend="virtualenv", install=lambda *a, **k: None,
                               run=lambda *args, calls=calls, **k: calls.append(args), error=error,
                               create_tmp=lambda: str(tmp_path))
        try:
            func(fake)
        except SessionError:
            continue  # a session that refuses to start here (versions-table: no release has run)
        for args in calls:
            if args[:3] == ("python", "-m", "q4gsw") and args[3] in ("run", "mutants"):
                written[name] = args[args.index("--results") + 1]
    assert {"accuracy-swiftshader", "accuracy-edges-lavapipe", "heavy", "executorch", "mutants",
            "versions-wgpudawn-0.32.0.4", "versions-wgpu-0.32.0"} <= set(written)
    assert {name: folder for name, folder in written.items() if folder != f"results/{name}"} == {}
