"""Fixtures: a config exported through its op's recipe and ExecuTorch's Vulkan partitioner, kept on disk.

A fixture is a directory holding the .pte, the op's constants unpacked from the .pte's delegate
(q4gsw/ops/<op>/ says which), the fp64 goldens, and manifest.json (sha256 of every file, the config,
package versions). It is written into a temporary directory and renamed into place, under a file
lock, so a killed export never leaves a fixture that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from q4gsw.export.pte import UnreadablePte, constants_from_foreign_pte
from q4gsw.matrix.values import DEFAULT_OP, Config
from q4gsw.ops import op_for, registry
from q4gsw.paths import OWNED_MARKER, NotOurs, fixture_cache, mark_owned
from q4gsw.paths import remove_owned as _remove_owned

FIXTURE_FORMAT = 2  # 2: goldens over fp32-dequantized weights (the op's definition)
MANIFEST = "manifest.json"
PTE_FILE = "model.pte"
EXPORT_PACKAGES = ("torch", "executorch", "torchao")


GOLDEN_PREFIX = "golden-"


def golden_file(input_name: str) -> str:
    return f"{GOLDEN_PREFIX}{input_name}.npy"


class FixtureError(RuntimeError):
    """A fixture is missing, incomplete or does not match its manifest."""


def default_cache_dir() -> Path:
    return fixture_cache()


def find_fixture(folder: Path, config: Config, cache: Path | None = None) -> Path:
    """A config's fixture in a folder written by `q4gsw export --out` (DIR/<config>/), or in one written by
    ExecuTorch's export script (DIR/<prefix><config>.pte + .golden.bin, the prefix its op's), which is
    converted once into a q4gsw fixture under the cache."""
    ours = folder / config.name
    prefix = op_for(config).executorch_fixture_prefix
    stem = f"{prefix}{config.name}"
    pte = folder / f"{stem}.pte"
    if ours.exists() or prefix is None or not pte.is_file():
        return ours
    return import_executorch_fixture(pte, folder / f"{stem}.golden.bin", config,
                                     (cache or fixture_cache()) / "executorch-imports")


def import_executorch_fixture(pte_path: Path, golden_path: Path, config: Config, imports: Path) -> Path:
    """ExecuTorch's .pte + raw float32 golden (ramp input, [M, N] row-major, no header) as a q4gsw fixture.

    The golden is ExecuTorch's fp64 result rounded to fp32 (its format), so a comparison with it carries up to
    half an fp32 ulp of |y| more error than one with q4gsw's fp64 golden; the manifest says where it came from."""
    digest = hashlib.sha256(pte_path.read_bytes() + (golden_path.read_bytes() if golden_path.is_file() else b""))
    destination = imports / f"{config.name}-{digest.hexdigest()[:16]}"
    imports.mkdir(parents=True, exist_ok=True)
    with FileLock(str(destination) + ".lock"):
        if is_q4gsw_fixture(destination):
            return destination
        op = op_for(config)
        try:
            constants = constants_from_foreign_pte(pte_path, op.constants_from_pte)
        except UnreadablePte as exc:  # one line naming the file: that config fails, the others still run
            raise FixtureError(str(exc)) from exc
        mismatch = op.check_constants(constants, config)
        if mismatch:
            raise FixtureError(f"{pte_path}: {mismatch}")
        with _atomic_directory(destination) as temporary:
            _write_constants(temporary, op.constants_to_files(constants))
            shutil.copyfile(pte_path, temporary / PTE_FILE)
            input_sha256 = {}
            if golden_path.is_file():
                raw = np.fromfile(golden_path, dtype="<f4")
                shape = op.output_shape(config)
                if raw.size != int(np.prod(shape)):
                    raise FixtureError(f"{golden_path}: {raw.size} floats, config '{config.name}' needs "
                                       f"{' x '.join(map(str, shape))} = {int(np.prod(shape))}")
                _write_npy(temporary / golden_file(op.input_names[0]), raw.reshape(shape).astype(np.float64))
                x = op.make_input(op.input_names[0], config)
                input_sha256[op.input_names[0]] = hashlib.sha256(x.tobytes()).hexdigest()
            files = {p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
                     for p in sorted(temporary.iterdir()) if p.name != PARTIAL_MARKER}
            manifest = {"identity": fixture_identity(config), "key": digest.hexdigest(),
                        "config": config_record(config),
                        "op": op.name, "operator": op.operator, "cross_checked": False,
                        "source": executorch_source(pte_path, golden_path),
                        "input_sha256": input_sha256, "timings": {},
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
            (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return destination


def executorch_source(pte_path: Path, golden_path: Path) -> dict[str, str | None]:
    """Where an imported fixture's files came from: ExecuTorch's rounding is claimed only for ExecuTorch's golden."""
    theirs = golden_path.is_file()
    return {"executorch_pte": str(pte_path), "executorch_golden": str(golden_path) if theirs else None,
            "golden_precision": "fp64 rounded to fp32 by ExecuTorch" if theirs else
            f"no {golden_path.name}: computed in fp64 by q4gsw from the .pte's weights"}


def quiet_library_output() -> None:
    """Keep torch's warnings and the partitioner's INFO lines out of the user's console (--verbose shows them)."""
    import logging
    import warnings

    if os.environ.get("Q4GSW_VERBOSE") == "1":
        return
    warnings.filterwarnings("ignore")
    logging.disable(logging.INFO)  # the partitioner logs "Operators included in this Vulkan partition" at INFO
    for name in ("executorch", "torch", "torchao"):
        logging.getLogger(name).setLevel(logging.ERROR)


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def package_versions() -> dict[str, str]:
    return {name: package_version(name) for name in EXPORT_PACKAGES}


def fixture_identity(config: Config) -> dict[str, Any]:
    """Everything that determines a fixture's bytes; the op's dims at the top level, as they were when every op had
    M, K, N, group_size, so a linear fixture keeps its key (and its cache entry)."""
    return {**config.dims, "format": FIXTURE_FORMAT, "op": config.op, "weights": config.weights,
            "weight_seed": config.weight_seed, "inputs": list(config.inputs), "versions": package_versions()}


def config_record(config: Config) -> dict[str, Any]:
    """The config as a manifest records it (its tolerance aside, which does not change the bytes)."""
    record = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "tolerance"}
    upstream = config.upstream_tolerance
    return {**record, "dims": dict(config.dims), "inputs": list(config.inputs),
            "upstream_tolerance": asdict(upstream) if upstream is not None else None}


def fixture_key(config: Config) -> str:
    blob = json.dumps(fixture_identity(config), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def fixture_dir(cache: Path, config: Config) -> Path:
    return cache / f"{config.name}-{fixture_key(config)[:16]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Fixture:
    path: Path
    manifest: dict[str, Any]

    def golden(self, input_name: str) -> np.ndarray | None:
        """The stored fp64 golden for an input, or None when the fixture does not carry it."""
        name = golden_file(input_name)
        return np.load(self.path / name) if name in self.manifest["files"] else None

    def constants(self, config: Config) -> Any:
        """The op's constants, as the kernels bind them."""
        op = op_for(config)
        return op.constants_from_files({name: np.load(self.path / name) for name in op.constant_files}, config)


def verify_fixture(path: Path, config: Config | None = None) -> Fixture:
    """Check the manifest and every file's sha256; raise FixtureError saying what is wrong."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FixtureError(f"{path}: no {MANIFEST} (incomplete or not a fixture)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:  # not JSON, or not even UTF-8
        raise FixtureError(f"{manifest_path}: corrupt manifest ({exc})") from exc
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(entries, dict) or not isinstance(manifest.get("config", {}), dict)
            or not all(isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
                       for e in entries.values())):
        raise FixtureError(f"{manifest_path}: corrupt manifest (not {{'files': {{NAME: {{'sha256', 'size'}}}}, ...}})")
    for name, expected in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise FixtureError(f"{file}: missing (listed in {MANIFEST})")
        if file.stat().st_size != expected["size"]:
            raise FixtureError(f"{file}: size {file.stat().st_size} != {expected['size']} in {MANIFEST} (truncated?)")
        if sha256_file(file) != expected["sha256"]:
            raise FixtureError(f"{file}: sha256 does not match {MANIFEST} (corrupted)")
    if config is not None:
        for required in op_for(config).constant_files:
            if required not in manifest.get("files", {}):
                raise FixtureError(f"{path}: {MANIFEST} lists no {required}")
        recorded = manifest.get("config", {})
        # a manifest written before dims (when every op had M, K, N, group_size) recorded them at the top level
        recorded_dims = recorded.get("dims", recorded)
        wanted = {**{k: (recorded_dims.get(k), v) for k, v in config.dims.items()},
                  **{k: (recorded.get(k), getattr(config, k)) for k in ("weights", "weight_seed")}}
        for key, (found, expected) in wanted.items():
            if found != expected:
                raise FixtureError(f"{path}: fixture has {key}={found!r} but config '{config.name}' "
                                   f"has {key}={expected!r}")
    return Fixture(path=path, manifest=manifest)


def _quarter_progress(label: str, progress: Callable[[str], None]) -> Callable[[int, int], None]:
    """Report a long chunked computation (lm_head's golden) at each quarter, not at every chunk."""
    reported = [0]

    def report(done: int, total: int) -> None:
        quarter = 4 * done // total
        if quarter > reported[0] and total >= 16384:
            reported[0] = quarter
            progress(f"{label} {done}/{total} rows ({25 * quarter}%)")

    return report


def _write_constants(folder: Path, files: dict[str, np.ndarray]) -> None:
    for name, array in files.items():
        _write_npy(folder / name, array)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


PARTIAL_MARKER = OWNED_MARKER  # written first into every directory q4gsw builds


def is_q4gsw_fixture(path: Path) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("operator") in {op.operator for op in registry().values()}


def _only_fixture_files(path: Path) -> bool:
    """A complete q4gsw fixture and nothing else: every entry is a plain file its manifest lists (or the
    manifest), so a user's file put beside a fixture is never deleted with it."""
    if not is_q4gsw_fixture(path):
        return False
    files = json.loads((path / MANIFEST).read_text()).get("files")
    listed = {MANIFEST, *(files if isinstance(files, dict) else ())}
    return all(p.name in listed and p.is_file() and not p.is_symlink() for p in path.iterdir())


def remove_owned(path: Path) -> None:
    """Delete a fixture or partial directory q4gsw wrote (paths.remove_owned, the only delete), never anything
    else: NotOurs for a symlink, a file, a folder without a q4gsw manifest or partial marker, or a fixture
    folder holding files its manifest does not list."""
    _remove_owned(path, path.parent, _only_fixture_files)


def refuse_unless_ours(destination: Path) -> None:
    """Checked before any work: `destination` is absent or something remove_owned may replace."""
    if not destination.exists() and not destination.is_symlink():
        return
    if destination.is_symlink() or not destination.is_dir() or not (
            (destination / PARTIAL_MARKER).is_file() or _only_fixture_files(destination)):
        raise NotOurs(f"{destination} exists and is not a fixture q4gsw wrote: move it away or choose another "
                      "--out (q4gsw never deletes what it did not write)")


@contextmanager
def _atomic_directory(destination: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `destination` only if the block completes,
    so a crash or kill -9 never leaves a half-written fixture under the trusted name."""
    if destination.name in ("", ".", ".."):
        raise NotOurs(f"{destination}: a fixture must be a named folder inside another one")
    refuse_unless_ours(destination)  # before any work; the old fixture is removed only once the new is complete
    parent = destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    temporary = parent / f".tmp-{destination.name}-{os.getpid()}"
    remove_owned(temporary)
    mark_owned(temporary, "a q4gsw fixture being written")
    try:
        yield temporary
        (temporary / PARTIAL_MARKER).unlink()
        remove_owned(destination)
        os.rename(temporary, destination)
    finally:
        if temporary.exists():
            (temporary / PARTIAL_MARKER).touch()  # incomplete again: removable as a partial directory
            remove_owned(temporary)


def build_fixture(config: Config, destination: Path, progress: Callable[[str], None] = print) -> Fixture:
    """Export `config` through its op's recipe into `destination` atomically (temp dir + rename)."""
    op = op_for(config)
    with _atomic_directory(destination) as temporary:
        timings = {}
        started = time.perf_counter()
        exported = op.export(config, progress)
        timings["export_s"] = time.perf_counter() - started
        if exported.pte:  # an op without an export recipe has no .pte: its constants are the fixture
            (temporary / PTE_FILE).write_bytes(exported.pte)
        _write_constants(temporary, op.constants_to_files(exported.constants))
        started = time.perf_counter()
        input_sha256 = {}
        for input_name in config.inputs:
            progress(f"export {config.name}: fp64 golden for input '{input_name}'")
            x = op.make_input(input_name, config)
            input_sha256[input_name] = hashlib.sha256(x.tobytes()).hexdigest()
            reference = op.golden(x, exported.constants,
                                  progress=_quarter_progress(f"export {config.name}: golden", progress))
            _write_npy(temporary / golden_file(input_name), reference)
        timings["golden_s"] = time.perf_counter() - started
        files = {p.name: {"sha256": sha256_file(p), "size": p.stat().st_size} for p in sorted(temporary.iterdir())
                 if p.name != PARTIAL_MARKER}
        manifest = {"identity": fixture_identity(config), "key": fixture_key(config),
                    "config": config_record(config),
                    "op": op.name, "operator": op.operator, "cross_checked": exported.cross_checked,
                    "input_sha256": input_sha256, "timings": timings,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "files": files}
        (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return Fixture(path=destination, manifest=manifest)


def ensure_fixture(config: Config, cache: Path, progress: Callable[[str], None] = print) -> Fixture:
    """Return a verified cached fixture, rebuilding it (and saying so) when absent or corrupt."""
    destination = fixture_dir(cache, config)
    with suppress(FixtureError, OSError):  # a complete fixture (renamed into place whole) needs no lock file:
        return verify_fixture(destination, config)  # a read-only cache holding every fixture runs
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(destination) + ".lock"):
        # Under the lock no one else builds this fixture: a .tmp-* dir for it is left by a killed export.
        for stale in cache.glob(f".tmp-{destination.name}-*"):
            progress(f"removing {stale.name}, left by an interrupted export")
            with suppress(NotOurs):
                remove_owned(stale)
        if destination.exists():
            try:
                return verify_fixture(destination, config)
            except FixtureError as exc:
                progress(f"cached fixture rejected, rebuilding: {exc}")
        return build_fixture(config, destination, progress)


def copy_fixture(fixture: Fixture, destination: Path, keep: Callable[[str, int], bool]) -> Fixture:
    """Copy a verified fixture (atomically) keeping only some files; the others stay listed under
    "omitted" with their sha256, so the provenance of what was left behind is not lost."""
    files = fixture.manifest["files"]
    for required in op_for(str(fixture.manifest.get("op", DEFAULT_OP))).constant_files:
        if not keep(required, files[required]["size"]):
            raise ValueError(f"{required} is needed to run a fixture and cannot be left out")
    with _atomic_directory(destination) as temporary:
        manifest = {**fixture.manifest, "files": {}, "omitted": dict(fixture.manifest.get("omitted", {}))}
        for name, entry in files.items():
            if keep(name, entry["size"]):
                shutil.copyfile(fixture.path / name, temporary / name)
                manifest["files"][name] = entry
            else:
                manifest["omitted"][name] = entry
        (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        verify_fixture(temporary)
    return Fixture(path=destination, manifest=manifest)
