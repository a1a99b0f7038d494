"""ExecuTorch's export folders under `--fixtures` (DIR/q4gsw_<config>.pte + .golden.bin) are untrusted input
(issue #22): a random or empty .pte fails that config with one line and the other configs still get their
fixtures; a missing .golden.bin is said, and the manifest then claims no ExecuTorch golden; reading a .pte without
executorch installed says what to install, and the nox session given such a folder installs it. Offline: the .pte
reader is replaced where a real .pte would need an export.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import run_cli
from helpers import random_packed, results_of, write_fixtures, write_matrix

from q4gsw.export import fixtures
from q4gsw.matrix.load import Config, load_matrix
from q4gsw.run.exporter import FixtureSource, from_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, Config]:
    matrix = load_matrix(write_matrix(tmp_path / "matrix.toml", configs="abc"))
    return {c.name: c for c in matrix.configs}


def lookup_for(folder: Path, cache: Path):
    return from_folder(FixtureSource(fixtures=folder, cache=cache, matrix_path=REPO / "matrix.toml"))


@pytest.mark.parametrize("content, says", [
    (b"", "empty file, not a .pte"),
    pytest.param(bytes(np.random.default_rng(22).integers(0, 256, 4096, dtype=np.uint8)),
                 "not a .pte ExecuTorch can read", marks=pytest.mark.e2e),  # executorch's reader: imports torch
], ids=["empty", "random"])
def test_an_unreadable_pte_fails_its_config_only(tmp_path, configs, content, says):
    pytest.importorskip("executorch")
    folder = tmp_path / "et"
    write_fixtures(folder, tmp_path / "matrix.toml", "b")  # b: a q4gsw fixture beside ExecuTorch's files
    (folder / "q4gsw_a.pte").write_bytes(content)
    lookup = lookup_for(folder, tmp_path / "cache")
    path, problem, _ = lookup(configs["a"])
    assert path is None
    assert problem.startswith("fixture for 'a' rejected: ") and says in problem and "q4gsw_a.pte" in problem
    assert "\n" not in problem
    path, problem, _ = lookup(configs["b"])
    assert path == folder / "b" and problem == ""


def test_reading_a_pte_without_executorch_says_what_to_install(tmp_path, configs, monkeypatch):
    (tmp_path / "q4gsw_a.pte").write_bytes(b"PTE bytes")
    for name in [n for n in sys.modules if n == "executorch" or n.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now raises ImportError
    with pytest.raises(fixtures.FixtureError) as caught:
        fixtures.find_fixture(tmp_path, configs["a"], tmp_path / "cache")
    assert "needs the executorch package: pip install -e '.[export]'" in str(caught.value)
    path, problem, _ = lookup_for(tmp_path, tmp_path / "cache")(configs["a"])
    assert path is None and "pip install -e '.[export]'" in problem


@pytest.mark.parametrize("with_golden", [True, False], ids=["golden", "no-golden"])
def test_the_manifest_claims_executorchs_golden_only_when_it_was_there(tmp_path, configs, monkeypatch, capsys,
                                                                       with_golden):
    config = configs["a"]
    # The op's .pte reader replaced by the constants a real .pte of this config holds (a real one needs an export).
    packed = random_packed(config.dims["N"], config.dims["K"], config.dims["group_size"], np.random.default_rng(3))
    monkeypatch.setattr(type(fixtures.op_for(config)), "constants_from_pte", lambda self, data: packed)
    folder = tmp_path / "et"
    folder.mkdir()
    (folder / "q4gsw_a.pte").write_bytes(b"a .pte")
    if with_golden:
        np.zeros(config.dims["M"] * config.dims["N"], dtype="<f4").tofile(folder / "q4gsw_a.golden.bin")
    path, problem, _ = lookup_for(folder, tmp_path / "cache")(config)
    assert problem == "" and path is not None
    source = json.loads((path / fixtures.MANIFEST).read_text())["source"]
    said = capsys.readouterr().out
    if with_golden:
        assert source["golden_precision"] == "fp64 rounded to fp32 by ExecuTorch"
        assert source["executorch_golden"] == str(folder / "q4gsw_a.golden.bin")
        assert "no ExecuTorch golden" not in said
    else:
        assert "ExecuTorch" not in source["golden_precision"] and source["executorch_golden"] is None
        assert "q4gsw_a.golden.bin: computed in fp64 by q4gsw" in source["golden_precision"]
        assert "note: a: no ExecuTorch golden (.golden.bin)" in said and "computed in fp64 by q4gsw" in said


def noxfile() -> ModuleType:
    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("q4gsw_noxfile_under_test", REPO / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_session_given_an_executorch_export_folder_installs_executorch(tmp_path):
    run_extras = noxfile().run_extras
    executorch_folder = tmp_path / "et"
    executorch_folder.mkdir()
    (executorch_folder / "q4gsw_kv_proj.pte").write_bytes(b"")
    ours = write_fixtures(tmp_path / "ours", write_matrix(tmp_path / "matrix.toml", configs="b"), "b")
    assert "export" in run_extras(["--executorch", "/et", "--fixtures", str(executorch_folder)]).split(",")
    assert "export" in run_extras([f"--fixtures={executorch_folder}"]).split(",")
    assert run_extras(["--fixtures", str(ours)]) == "report"  # q4gsw's fixtures: no torch, no executorch
    assert run_extras(["--config", "q_proj"]) == "export,report"  # fixtures exported into the cache


@pytest.mark.e2e
def test_a_run_with_a_random_pte_fails_that_config_and_runs_the_others(tmp_path, swiftshader_icd):
    pytest.importorskip("executorch")
    matrix = write_matrix(tmp_path / "matrix.toml", configs="ab")
    folder = write_fixtures(tmp_path / "et", matrix, "b")
    (folder / "q4gsw_a.pte").write_bytes(bytes(range(256)) * 8)
    done = run_cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(folder),
                   "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "r"), env=swiftshader_icd,
                   timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    results = results_of(tmp_path / "r")
    (a,) = results["a"]
    assert a["status"] == "fail" and "q4gsw_a.pte: not a .pte ExecuTorch can read" in a["message"]
    assert [r["status"] for r in results["b"]] == ["pass"]
