"""The fixture store offline (no torch): build_fixture, ensure_fixture, copy_fixture, the atomic directory and the
ExecuTorch-fixture lookup, with the op's export replaced by constants built here (issue #29's mutation audit: no
offline test called them). Every expected value is computed here with hashlib and numpy, not by the code tested.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_config

from q4gsw.export import fixtures
from q4gsw.export.fixtures import (
    FIXTURE_FORMAT,
    MANIFEST,
    PTE_FILE,
    FixtureError,
    build_fixture,
    copy_fixture,
    ensure_fixture,
    find_fixture,
    fixture_dir,
    verify_fixture,
)
from q4gsw.ops import op_for
from q4gsw.ops.base import Exported
from q4gsw.ops.linear_q4gsw import SCALES_FILE, WEIGHT_FILE
from q4gsw.ops.linear_q4gsw.layout import PackedLinear
from q4gsw.paths import OWNED_MARKER, NotOurs

N, K, GROUP = 4, 64, 32
PTE = b"not really a pte, but bytes the fixture keeps"


def _q_and_scales() -> tuple[np.ndarray, np.ndarray]:
    """int4 weights covering -8..7 and per-group scales that are exact binary fractions."""
    q = (np.arange(N * K).reshape(N, K) % 16) - 8
    scales = np.array([[0.5, 0.25, 0.125, 1.0], [2.0, 0.75, 1.5, 0.0625]], dtype=np.float32)  # [K / GROUP, N]
    return q, scales


def _packed() -> PackedLinear:
    """q packed by hand: two nibbles per byte, the lower one first, as (q + 8)."""
    q, scales = _q_and_scales()
    u = (q + 8).astype(np.uint8)
    return PackedLinear(weight_packed=(u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8), scales=scales,
                        group_size=GROUP)


def _expected_golden(x: np.ndarray) -> np.ndarray:
    q, scales = _q_and_scales()
    w = q.astype(np.float64) * np.repeat(scales.astype(np.float64), GROUP, axis=0).T  # exact: small binary fractions
    return x.astype(np.float64) @ w.T


@pytest.fixture
def fake_export(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """linear_q4gsw's export replaced by fixed constants and .pte bytes; the list records each export's config."""
    exported: list[str] = []
    op_class = type(op_for("linear_q4gsw"))

    def export(self: Any, config: Any, progress: Any) -> Exported:
        exported.append(config.name)
        return Exported(pte=PTE, constants=_packed(), cross_checked=True)

    monkeypatch.setattr(op_class, "export", export)
    return exported


def _config(name: str = "fx", inputs: tuple[str, ...] = ("ramp", "normal")) -> Any:
    return make_config(name, 2, K, N, GROUP, inputs, weight_seed=7)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_fixture_writes_every_file_and_a_manifest_that_lists_them(tmp_path, fake_export):
    config = _config()
    said: list[str] = []
    fixture = build_fixture(config, tmp_path / "fx", said.append)
    folder = tmp_path / "fx"
    assert fixture.path == folder and fake_export == ["fx"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MANIFEST, PTE_FILE, WEIGHT_FILE, SCALES_FILE, "golden-ramp.npy", "golden-normal.npy"])  # no partial marker
    assert (folder / PTE_FILE).read_bytes() == PTE
    assert np.array_equal(np.load(folder / WEIGHT_FILE), _packed().weight_packed)
    assert np.array_equal(np.load(folder / SCALES_FILE), _q_and_scales()[1])
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest == fixture.manifest
    assert manifest["files"] == {p.name: {"sha256": _sha(p), "size": p.stat().st_size}
                                 for p in folder.iterdir() if p.name != MANIFEST}
    op = op_for(config)
    for name in config.inputs:
        x = op.make_input(name, config)
        assert manifest["input_sha256"][name] == hashlib.sha256(x.tobytes()).hexdigest()
        stored = np.load(folder / f"golden-{name}.npy")
        assert stored.dtype == np.float64 and np.allclose(stored, _expected_golden(x), rtol=1e-12, atol=1e-12)
    assert manifest["op"] == "linear_q4gsw" and manifest["operator"] == op.operator
    assert manifest["cross_checked"] is True
    assert manifest["identity"]["format"] == FIXTURE_FORMAT and manifest["identity"]["M"] == 2
    assert manifest["key"] == hashlib.sha256(json.dumps(manifest["identity"], sort_keys=True).encode()).hexdigest()
    assert manifest["config"]["name"] == "fx" and manifest["config"]["dims"] == {"M": 2, "K": K, "N": N,
                                                                                "group_size": GROUP}
    assert "tolerance" not in manifest["config"] and manifest["config"]["upstream_tolerance"] is None
    assert set(manifest["timings"]) == {"export_s", "golden_s"} and all(t >= 0 for t in manifest["timings"].values())
    assert manifest["created"].endswith("Z") and len(manifest["created"]) == len("2026-12-08T02:00:00Z")
    assert said == ["export fx: fp64 golden for input 'ramp'", "export fx: fp64 golden for input 'normal'"]
    assert verify_fixture(folder, config).manifest == manifest


def test_a_fixture_without_a_pte_has_none_in_its_folder(tmp_path, monkeypatch):
    op_class = type(op_for("linear_q4gsw"))
    monkeypatch.setattr(op_class, "export", lambda self, config, progress: Exported(
        pte=b"", constants=_packed(), cross_checked=False))
    fixture = build_fixture(_config(inputs=("ramp",)), tmp_path / "fx", lambda _: None)
    assert not (tmp_path / "fx" / PTE_FILE).exists() and fixture.manifest["cross_checked"] is False


def test_the_golden_reports_each_quarter_of_a_long_computation_only():
    said: list[str] = []
    report = fixtures._quarter_progress("golden", said.append)
    for done in (4096, 8191, 8192, 12288, 16384):
        report(done, 16384)
    assert said == ["golden 4096/16384 rows (25%)", "golden 8192/16384 rows (50%)", "golden 12288/16384 rows (75%)",
                    "golden 16384/16384 rows (100%)"]
    short: list[str] = []
    report = fixtures._quarter_progress("golden", short.append)
    for done in (4095, 8190, 16383):
        report(done, 16383)  # under 16384 rows: too short to report
    assert short == []


def test_ensure_fixture_builds_once_then_reuses_and_rebuilds_a_corrupt_one(tmp_path, fake_export):
    config = _config(inputs=("ramp",))
    cache = tmp_path / "cache"
    said: list[str] = []
    first = ensure_fixture(config, cache, said.append)
    assert first.path == fixture_dir(cache, config) and fake_export == ["fx"]
    assert ensure_fixture(config, cache, said.append).manifest == first.manifest and fake_export == ["fx"]
    scales = first.path / SCALES_FILE
    data = bytearray(scales.read_bytes())
    data[-1] ^= 1
    scales.write_bytes(bytes(data))
    said.clear()
    rebuilt = ensure_fixture(config, cache, said.append)
    assert fake_export == ["fx", "fx"] and _sha(scales) == rebuilt.manifest["files"][SCALES_FILE]["sha256"]
    assert said[0] == f"cached fixture rejected, rebuilding: {scales}: sha256 does not match {MANIFEST} (corrupted)"


def test_ensure_fixture_removes_what_a_killed_export_left_and_keeps_a_users_folder(tmp_path, fake_export):
    config = _config(inputs=("ramp",))
    cache = tmp_path / "cache"
    destination = fixture_dir(cache, config)
    stale = cache / f".tmp-{destination.name}-99999"
    stale.mkdir(parents=True)
    (stale / OWNED_MARKER).write_text("partial")
    users = cache / f".tmp-{destination.name}-12345"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    said: list[str] = []
    ensure_fixture(config, cache, said.append)
    assert not stale.exists() and (users / "notes.txt").read_text() == "mine"
    assert f"removing {stale.name}, left by an interrupted export" in said


def test_copy_fixture_keeps_the_chosen_files_and_lists_the_others_as_omitted(tmp_path, fake_export):
    config = _config()
    source = build_fixture(config, tmp_path / "fx", lambda _: None)
    copy = copy_fixture(source, tmp_path / "copy", lambda name, size: name != "golden-normal.npy")
    assert sorted(p.name for p in copy.path.iterdir()) == sorted(
        [MANIFEST, PTE_FILE, WEIGHT_FILE, SCALES_FILE, "golden-ramp.npy"])
    assert copy.manifest["omitted"] == {"golden-normal.npy": source.manifest["files"]["golden-normal.npy"]}
    assert set(copy.manifest["files"]) == {PTE_FILE, WEIGHT_FILE, SCALES_FILE, "golden-ramp.npy"}
    assert json.loads((copy.path / MANIFEST).read_text()) == copy.manifest
    assert verify_fixture(copy.path, config).manifest["key"] == source.manifest["key"]
    again = copy_fixture(copy, tmp_path / "again", lambda name, size: name != "golden-ramp.npy")
    assert again.manifest["omitted"] == {name: source.manifest["files"][name]  # the omissions add up
                                         for name in ("golden-normal.npy", "golden-ramp.npy")}


@pytest.mark.parametrize("left_out", [WEIGHT_FILE, SCALES_FILE])
def test_copy_fixture_refuses_to_leave_out_a_constant(tmp_path, fake_export, left_out):
    source = build_fixture(_config(inputs=("ramp",)), tmp_path / "fx", lambda _: None)
    with pytest.raises(ValueError, match=f"^{left_out} is needed to run a fixture and cannot be left out$"):
        copy_fixture(source, tmp_path / "copy", lambda name, size: name != left_out)
    assert not (tmp_path / "copy").exists()


def test_a_failed_build_leaves_the_old_fixture_and_no_temporary_folder(tmp_path, fake_export, monkeypatch):
    config = _config(inputs=("ramp",))
    old = build_fixture(config, tmp_path / "fx", lambda _: None)

    def broken_golden(*args: Any, **kwargs: Any) -> np.ndarray:
        raise MemoryError("golden")

    monkeypatch.setattr(type(op_for(config)), "golden", broken_golden)
    with pytest.raises(MemoryError):
        build_fixture(config, tmp_path / "fx", lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fx"]
    assert verify_fixture(tmp_path / "fx", config).manifest == old.manifest


def test_build_fixture_replaces_only_folders_q4gsw_wrote(tmp_path, fake_export):
    config = _config(inputs=("ramp",))
    users = tmp_path / "mine"
    users.mkdir()
    (users / "thesis.tex").write_text("keep")
    with pytest.raises(NotOurs, match="mine exists and is not a fixture q4gsw wrote: move it away or choose "
                                      "another --out"):
        build_fixture(config, users, lambda _: None)
    assert (users / "thesis.tex").read_text() == "keep" and fake_export == []
    a_file = tmp_path / "file"
    a_file.write_text("keep")
    with pytest.raises(NotOurs, match="is not a fixture q4gsw wrote"):
        build_fixture(config, a_file, lambda _: None)
    link = tmp_path / "link"
    link.symlink_to(users)
    with pytest.raises(NotOurs, match="is not a fixture q4gsw wrote"):
        build_fixture(config, link, lambda _: None)
    with pytest.raises(NotOurs, match="a fixture must be a named folder inside another one"):
        build_fixture(config, Path(".."), lambda _: None)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / OWNED_MARKER).write_text("partial")
    assert build_fixture(config, partial, lambda _: None).path == partial and not (partial / OWNED_MARKER).exists()
    (partial / "extra.txt").write_text("a user's file beside a fixture")
    with pytest.raises(NotOurs):
        build_fixture(config, partial, lambda _: None)
    assert (partial / "extra.txt").exists()


def test_is_q4gsw_fixture_needs_a_manifest_dict_naming_a_known_operator(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    assert not fixtures.is_q4gsw_fixture(folder)
    for text, expected in [("not json", False), ("[]", False), ('{"operator": "aten.mm"}', False),
                           (json.dumps({"operator": op_for("embedding_q4gsw").operator}), True)]:
        (folder / MANIFEST).write_text(text)
        assert fixtures.is_q4gsw_fixture(folder) is expected, text


def test_config_record_keeps_the_upstream_tolerance_as_a_dict():
    from dataclasses import replace

    from q4gsw.matrix.load import Tolerance

    config = _config()
    record = fixtures.config_record(replace(config, upstream_tolerance=Tolerance(atol=0.25, rtol=0.5)))
    assert isinstance(record["upstream_tolerance"], dict)
    assert (record["upstream_tolerance"]["atol"], record["upstream_tolerance"]["rtol"]) == (0.25, 0.5)
    assert record["inputs"] == ["ramp", "normal"] and record["weight_seed"] == 7 and record["tier"] == "required"


def test_executorch_source_claims_executorchs_rounding_only_for_its_golden(tmp_path):
    pte, golden = tmp_path / "a.pte", tmp_path / "a.golden.bin"
    assert fixtures.executorch_source(pte, golden) == {
        "executorch_pte": str(pte), "executorch_golden": None,
        "golden_precision": "no a.golden.bin: computed in fp64 by q4gsw from the .pte's weights"}
    golden.write_bytes(b"\0" * 4)
    assert fixtures.executorch_source(pte, golden) == {
        "executorch_pte": str(pte), "executorch_golden": str(golden),
        "golden_precision": "fp64 rounded to fp32 by ExecuTorch"}


def test_find_fixture_converts_only_an_executorch_pte_without_a_q4gsw_fixture(tmp_path, monkeypatch):
    imported: list[tuple[Path, Path, str, Path]] = []

    def fake_import(pte: Path, golden: Path, config: Any, imports: Path) -> Path:
        imported.append((pte, golden, config.name, imports))
        return imports / "converted"

    monkeypatch.setattr(fixtures, "import_executorch_fixture", fake_import)
    monkeypatch.setenv("Q4GSW_CACHE", str(tmp_path / "default-cache"))
    config = _config()
    assert find_fixture(tmp_path, config) == tmp_path / "fx" and imported == []  # no .pte: our folder's name
    (tmp_path / "q4gsw_fx.pte").write_bytes(b"pte")
    assert find_fixture(tmp_path, config, tmp_path / "cache") == tmp_path / "cache" / "executorch-imports" / "converted"
    assert imported == [(tmp_path / "q4gsw_fx.pte", tmp_path / "q4gsw_fx.golden.bin", "fx",
                         tmp_path / "cache" / "executorch-imports")]
    default_imports = tmp_path / "default-cache" / "fixtures" / "executorch-imports"
    assert find_fixture(tmp_path, config) == default_imports / "converted"
    (tmp_path / "fx").mkdir()  # a q4gsw fixture of that name wins
    assert find_fixture(tmp_path, config) == tmp_path / "fx" and len(imported) == 2


def test_sha256_file_reads_a_file_larger_than_one_block(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, size=(1 << 22) + 12345, dtype=np.uint8).tobytes()
    path = tmp_path / "big"
    path.write_bytes(data)
    assert fixtures.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_package_version_says_missing_for_a_package_that_is_not_installed():
    from importlib import metadata

    assert fixtures.package_version("q4gsw-no-such-package") == "missing"
    assert fixtures.package_version("numpy") == metadata.version("numpy") == np.__version__
    assert set(fixtures.package_versions()) == {"torch", "executorch", "torchao"}


def test_quiet_library_output_silences_the_export_libraries_unless_verbose(monkeypatch):
    loggers = {name: logging.getLogger(name) for name in ("executorch", "torch", "torchao")}
    levels = {name: logger.level for name, logger in loggers.items()}
    try:
        with warnings.catch_warnings():
            monkeypatch.setenv("Q4GSW_VERBOSE", "1")
            fixtures.quiet_library_output()
            assert all(logger.level == levels[name] for name, logger in loggers.items())
            assert logging.root.manager.disable == logging.NOTSET
            monkeypatch.delenv("Q4GSW_VERBOSE")
            fixtures.quiet_library_output()
            assert all(logger.level == logging.ERROR for logger in loggers.values())
            assert logging.root.manager.disable == logging.INFO
            assert warnings.filters[0][0] == "ignore"
    finally:
        logging.disable(logging.NOTSET)
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
    assert os.environ.get("Q4GSW_VERBOSE") is None


@pytest.fixture
def pte_reader(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """linear_q4gsw's .pte reader replaced by _packed() (a real .pte needs an export); the list records its reads."""
    read: list[bytes] = []

    def constants_from_pte(self: Any, data: bytes) -> PackedLinear:
        read.append(data)
        return _packed()

    monkeypatch.setattr(type(op_for("linear_q4gsw")), "constants_from_pte", constants_from_pte)
    return read


def test_an_executorch_pte_and_golden_become_a_fixture_once(tmp_path, pte_reader):
    config = _config(inputs=("ramp",))
    pte, golden = tmp_path / "q4gsw_fx.pte", tmp_path / "q4gsw_fx.golden.bin"
    pte.write_bytes(PTE)
    theirs = (np.arange(2 * N, dtype="<f4") / 8).astype("<f4")  # [M, N] row-major, fp32, no header
    theirs.tofile(golden)
    digest = hashlib.sha256(PTE + golden.read_bytes()).hexdigest()
    path = fixtures.import_executorch_fixture(pte, golden, config, tmp_path / "imports")
    assert path == tmp_path / "imports" / f"fx-{digest[:16]}" and pte_reader == [PTE]
    assert sorted(p.name for p in path.iterdir()) == sorted([MANIFEST, PTE_FILE, WEIGHT_FILE, SCALES_FILE,
                                                             "golden-ramp.npy"])
    assert (path / PTE_FILE).read_bytes() == PTE
    stored = np.load(path / "golden-ramp.npy")
    assert stored.dtype == np.float64 and np.array_equal(stored, theirs.reshape(2, N).astype(np.float64))
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["key"] == digest and manifest["cross_checked"] is False and manifest["timings"] == {}
    assert manifest["op"] == "linear_q4gsw" and manifest["operator"] == op_for(config).operator
    assert manifest["source"]["executorch_pte"] == str(pte) and manifest["source"]["executorch_golden"] == str(golden)
    x = op_for(config).make_input("ramp", config)
    assert manifest["input_sha256"] == {"ramp": hashlib.sha256(x.tobytes()).hexdigest()}
    assert manifest["files"] == {p.name: {"sha256": _sha(p), "size": p.stat().st_size}
                                 for p in path.iterdir() if p.name != MANIFEST}
    assert manifest["identity"]["M"] == 2 and manifest["config"]["name"] == "fx" and manifest["created"].endswith("Z")
    assert verify_fixture(path, config).manifest == manifest
    assert fixtures.import_executorch_fixture(pte, golden, config, tmp_path / "imports") == path
    assert pte_reader == [PTE]  # converted once: the second lookup reads nothing


def test_an_executorch_pte_without_a_golden_gets_none_and_no_input_hash(tmp_path, pte_reader):
    config = _config(inputs=("ramp",))
    pte = tmp_path / "q4gsw_fx.pte"
    pte.write_bytes(PTE)
    path = fixtures.import_executorch_fixture(pte, tmp_path / "q4gsw_fx.golden.bin", config, tmp_path / "imports")
    assert path.name == f"fx-{hashlib.sha256(PTE).hexdigest()[:16]}"
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["input_sha256"] == {} and not (path / "golden-ramp.npy").exists()
    assert manifest["source"]["executorch_golden"] is None


def test_an_executorch_golden_of_the_wrong_size_or_constants_of_another_shape_are_refused(tmp_path, pte_reader,
                                                                                          monkeypatch):
    config = _config(inputs=("ramp",))
    pte, golden = tmp_path / "q4gsw_fx.pte", tmp_path / "q4gsw_fx.golden.bin"
    pte.write_bytes(PTE)
    np.zeros(7, dtype="<f4").tofile(golden)
    with pytest.raises(FixtureError) as raised:
        fixtures.import_executorch_fixture(pte, golden, config, tmp_path / "imports")
    assert str(raised.value) == f"{golden}: 7 floats, config 'fx' needs 2 x {N} = {2 * N}"
    assert [p.name for p in (tmp_path / "imports").iterdir() if not p.name.endswith(".lock")] == []  # nothing kept
    wide = PackedLinear(weight_packed=np.zeros((N + 1, K // 2), np.uint8), scales=np.ones((2, N + 1), np.float32),
                        group_size=GROUP)
    monkeypatch.setattr(type(op_for(config)), "constants_from_pte", lambda self, data: wide)
    with pytest.raises(FixtureError) as raised:
        fixtures.import_executorch_fixture(pte, golden, config, tmp_path / "imports")
    assert str(raised.value) == f"{pte}: holds N={N + 1}, K={K}, group_size={GROUP}; config 'fx' has N={N}, K={K}, " \
                                f"group_size={GROUP}"
    pte.write_bytes(b"")
    with pytest.raises(FixtureError) as raised:
        fixtures.import_executorch_fixture(pte, golden, config, tmp_path / "imports")
    assert str(raised.value) == f"{pte}: empty file, not a .pte"
